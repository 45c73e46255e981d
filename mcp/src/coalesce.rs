//! Response bodies that write what is ready in one go.
//!
//! rmcp answers a request in a session as a short SSE stream: a priming event, the response and
//! the end, usually all ready at once. Handed to hyper frame by frame, that costs a `writev`
//! (and a loopback packet) per frame; merging the frames that are ready without waiting halves
//! the syscalls per call and never delays a frame: whatever is ready when the inner body would
//! block goes out at once.

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

pub struct Coalesce<B> {
    inner: B,
    /// A non-data frame (trailers) met while merging, sent on the next poll.
    held: Option<Frame<Bytes>>,
    finished: bool,
}

impl<B> Coalesce<B> {
    pub fn new(inner: B) -> Self {
        Self {
            inner,
            held: None,
            finished: false,
        }
    }
}

impl<B> Body for Coalesce<B>
where
    // rmcp's bodies cannot fail, which keeps merging simple: no error waits behind data.
    B: Body<Data = Bytes, Error = Infallible> + Unpin,
{
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(frame) = self.held.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        if self.finished {
            return Poll::Ready(None);
        }
        let mut merged: Option<BytesMut> = None;
        let ready = |merged: Option<BytesMut>| merged.map(|m| Ok(Frame::data(m.freeze())));
        loop {
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => match merged.as_mut() {
                        Some(m) => m.extend_from_slice(&data),
                        None => merged = Some(BytesMut::from(&data[..])),
                    },
                    Err(other) => {
                        if merged.is_none() {
                            return Poll::Ready(Some(Ok(other)));
                        }
                        self.held = Some(other);
                        return Poll::Ready(ready(merged));
                    }
                },
                Poll::Ready(Some(Err(never))) => match never {},
                Poll::Ready(None) => {
                    self.finished = true;
                    return Poll::Ready(ready(merged));
                }
                Poll::Pending => {
                    return match merged {
                        Some(_) => Poll::Ready(ready(merged)),
                        None => Poll::Pending,
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_none() && (self.finished || self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Reads a response stream up to its first JSON-RPC message (skipping SSE priming events,
/// which carry no data). Returning the response only then lets hyper send the headers and the
/// answer in one write instead of two; a stream that ends first is read to its end.
pub async fn read_to_first_message<B>(body: &mut Coalesce<B>) -> Bytes
where
    B: Body<Data = Bytes, Error = Infallible> + Unpin,
{
    let mut read = BytesMut::new();
    loop {
        let frame = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await;
        match frame {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    read.extend_from_slice(&data);
                    if has_message(&read) {
                        return read.freeze();
                    }
                }
                Err(other) => {
                    body.held = Some(other);
                    return read.freeze();
                }
            },
            Some(Err(never)) => match never {},
            None => return read.freeze(),
        }
    }
}

fn has_message(sse: &[u8]) -> bool {
    sse.windows(6).any(|w| w == b"data:{") || sse.windows(7).any(|w| w == b"data: {")
}

/// A body that yields bytes already read, then the rest of the stream.
pub struct Prefixed<B> {
    prefix: Option<Bytes>,
    rest: Coalesce<B>,
}

impl<B> Prefixed<B> {
    pub fn new(prefix: Bytes, rest: Coalesce<B>) -> Self {
        Self {
            prefix: (!prefix.is_empty()).then_some(prefix),
            rest,
        }
    }
}

impl<B> Body for Prefixed<B>
where
    B: Body<Data = Bytes, Error = Infallible> + Unpin,
{
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(prefix) = self.prefix.take() {
            // Whatever else is ready right now goes out with it.
            let mut merged = BytesMut::from(&prefix[..]);
            if let Poll::Ready(Some(Ok(frame))) = Pin::new(&mut self.rest).poll_frame(cx) {
                match frame.into_data() {
                    Ok(data) => merged.extend_from_slice(&data),
                    Err(other) => self.rest.held = Some(other),
                }
            }
            return Poll::Ready(Some(Ok(Frame::data(merged.freeze()))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn body(
        parts: &[&'static str],
    ) -> Coalesce<http_body_util::combinators::BoxBody<Bytes, Infallible>> {
        let frames: Vec<Result<Frame<Bytes>, Infallible>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes()))))
            .collect();
        Coalesce::new(StreamBody::new(futures::stream::iter(frames)).boxed())
    }

    #[tokio::test]
    async fn ready_frames_merge_and_nothing_is_lost() {
        let mut b = body(&["id: 0\nretry: 3000\n\n", "data: {\"id\":1}\n\n", "tail"]);
        let first = read_to_first_message(&mut b).await;
        assert!(has_message(&first));
        let whole = Prefixed::new(first, b)
            .collect()
            .await
            .map(|c| c.to_bytes());
        let whole = whole.unwrap_or_default();
        assert_eq!(
            &whole[..],
            b"id: 0\nretry: 3000\n\ndata: {\"id\":1}\n\ntail"
        );
    }

    #[tokio::test]
    async fn a_stream_without_messages_is_read_to_its_end() {
        let mut b = body(&["id: 0\n\n"]);
        assert_eq!(&read_to_first_message(&mut b).await[..], b"id: 0\n\n");
        assert!(b.is_end_stream());
    }
}
