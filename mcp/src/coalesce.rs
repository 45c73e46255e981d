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
