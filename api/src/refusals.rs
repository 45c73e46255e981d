//! The error answers a route documents because of what it extracts: each extractor says what it
//! may answer instead of letting its handler run ([`Refusals`]), and [`document`] adds those of
//! a handler's arguments to its operation. A route that signs its caller in documents 401, one
//! that reads a JSON body 400, 413, 415 and 422, and so on, without repeating them by hand; its
//! `#[utoipa::path]` lists only what the handler itself answers. Every error is documented as
//! `application/problem+json`, as it is sent.

use crate::error::Problem;
use crate::extract::{
    AuthUser, JsonBody, JsonBodyWithNul, Membership, NoQuery, Path, QueryPairs, QueryParams,
    RequestContext,
};
use crate::paging::Paged;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use utoipa::openapi::path::{HttpMethod, Operation, Paths};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::ToSchema;

/// The media type of every error answer.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error answer: its status and what it means on this route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub description: &'static str,
}

const fn refusal(status: StatusCode, description: &'static str) -> Refusal {
    Refusal {
        status,
        description,
    }
}

const NOT_SIGNED_IN: Refusal = refusal(
    StatusCode::UNAUTHORIZED,
    "Not signed in, or the access token is not valid",
);
const BODY: &[Refusal] = &[
    refusal(StatusCode::BAD_REQUEST, "The body is not valid JSON"),
    refusal(
        StatusCode::PAYLOAD_TOO_LARGE,
        "The body is larger than 64 KiB",
    ),
    refusal(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "The body is not sent as `application/json`",
    ),
    refusal(
        StatusCode::UNPROCESSABLE_ENTITY,
        "A field is missing, of the wrong type or invalid",
    ),
];
const QUERY: &[Refusal] = &[
    refusal(
        StatusCode::BAD_REQUEST,
        "A query parameter is unknown or of the wrong type",
    ),
    refusal(
        StatusCode::UNPROCESSABLE_ENTITY,
        "A query parameter's value is not one it takes",
    ),
];

/// What an extractor may answer instead of letting its handler run.
pub trait Refusals {
    const REFUSALS: &'static [Refusal] = &[];
}

impl<S> Refusals for State<S> {}
impl Refusals for RequestContext {}
impl Refusals for HeaderMap {}

impl Refusals for AuthUser {
    const REFUSALS: &'static [Refusal] = &[NOT_SIGNED_IN];
}

impl Refusals for Membership {
    const REFUSALS: &'static [Refusal] = &[
        NOT_SIGNED_IN,
        refusal(StatusCode::NOT_FOUND, "No such org (or not a member)"),
    ];
}

impl<T> Refusals for JsonBody<T> {
    const REFUSALS: &'static [Refusal] = BODY;
}

impl<T> Refusals for JsonBodyWithNul<T> {
    const REFUSALS: &'static [Refusal] = BODY;
}

impl<T> Refusals for QueryParams<T> {
    const REFUSALS: &'static [Refusal] = QUERY;
}

impl Refusals for QueryPairs {
    const REFUSALS: &'static [Refusal] = &[refusal(
        StatusCode::BAD_REQUEST,
        "A query parameter is unknown or of the wrong form",
    )];
}

impl Refusals for NoQuery {
    const REFUSALS: &'static [Refusal] = &[refusal(
        StatusCode::BAD_REQUEST,
        "A query parameter was sent: the route takes none",
    )];
}

impl<F, K> Refusals for Paged<F, K> {
    const REFUSALS: &'static [Refusal] = &[
        refusal(
            StatusCode::BAD_REQUEST,
            "A query parameter is unknown or of the wrong type, or `limit` or `cursor` is not \
             one the list takes",
        ),
        QUERY[1],
    ];
}

/// Path parameters, with what the route answers when they name nothing.
pub trait NamesSomething {
    /// The 404 description: what the path names.
    const NOT_FOUND: &'static str;
}

impl<T: NamesSomething> Refusals for Path<T> {
    const REFUSALS: &'static [Refusal] = &[refusal(StatusCode::NOT_FOUND, T::NOT_FOUND)];
}

/// The refusals of every argument a handler extracts, implemented for handlers as axum
/// implements `Handler`: for functions of up to eight arguments that each say theirs.
pub trait HandlerRefusals<Args> {
    fn refusals() -> Vec<Refusal>;
}

macro_rules! handler_refusals {
    ($($arg:ident),*) => {
        impl<F, Fut, $($arg,)*> HandlerRefusals<($($arg,)*)> for F
        where
            F: FnOnce($($arg),*) -> Fut,
            $($arg: Refusals,)*
        {
            fn refusals() -> Vec<Refusal> {
                #[allow(unused_mut)]
                let mut all = Vec::new();
                $(all.extend_from_slice($arg::REFUSALS);)*
                all
            }
        }
    };
}

handler_refusals!();
handler_refusals!(A1);
handler_refusals!(A1, A2);
handler_refusals!(A1, A2, A3);
handler_refusals!(A1, A2, A3, A4);
handler_refusals!(A1, A2, A3, A4, A5);
handler_refusals!(A1, A2, A3, A4, A5, A6);
handler_refusals!(A1, A2, A3, A4, A5, A6, A7);
handler_refusals!(A1, A2, A3, A4, A5, A6, A7, A8);

/// Adds the refusals of `handler`'s arguments to its operation (`P`, its `#[utoipa::path]`) in
/// `paths`. A status the route documents already keeps its entry, its description following
/// the extractor's.
pub fn document<P: utoipa::Path, Args, H: HandlerRefusals<Args>>(paths: &mut Paths, _: &H) {
    let Some(item) = paths.paths.get_mut(&P::path()) else {
        return;
    };
    for method in P::methods() {
        let operation = match method {
            HttpMethod::Get => item.get.as_mut(),
            HttpMethod::Post => item.post.as_mut(),
            HttpMethod::Put => item.put.as_mut(),
            HttpMethod::Patch => item.patch.as_mut(),
            HttpMethod::Delete => item.delete.as_mut(),
            _ => None,
        };
        if let Some(operation) = operation {
            add(operation, &H::refusals());
        }
    }
}

fn add(operation: &mut Operation, refusals: &[Refusal]) {
    // Several extractors may give one status (a body's 400 and a query's): one entry each.
    let mut by_status: Vec<(StatusCode, Vec<&str>)> = Vec::new();
    for r in refusals {
        match by_status.iter_mut().find(|(status, _)| *status == r.status) {
            Some((_, descriptions)) if descriptions.contains(&r.description) => {}
            Some((_, descriptions)) => descriptions.push(r.description),
            None => by_status.push((r.status, vec![r.description])),
        }
    }
    let responses = &mut operation.responses.responses;
    for (status, mut descriptions) in by_status {
        if let Some(RefOr::T(own)) = responses.get(status.as_str()) {
            let own = own.description.as_str();
            if !own.is_empty() && !descriptions.iter().any(|d| d.eq_ignore_ascii_case(own)) {
                descriptions.push(own);
            }
        }
        let description = descriptions
            .iter()
            .enumerate()
            .map(|(i, d)| {
                if i == 0 {
                    (*d).to_owned()
                } else {
                    lowercase_first(d)
                }
            })
            .collect::<Vec<_>>()
            .join("; ");
        responses.insert(status.as_str().to_owned(), RefOr::T(problem(&description)));
    }
}

/// An error answer as every route sends it.
pub fn problem(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(Problem::name())))
                .build(),
        )
        .build()
}

/// "No such server" continues a sentence as "no such server" (but "TCK-" stays as it is).
fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(second)) if first.is_uppercase() && second.is_lowercase() => {
            first.to_lowercase().chain(text.chars().skip(1)).collect()
        }
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_routes_own_description_follows_the_extractors() {
        let mut operation = Operation::new();
        operation
            .responses
            .responses
            .insert("404".to_owned(), RefOr::T(problem("No such server")));
        add(
            &mut operation,
            &[
                NOT_SIGNED_IN,
                refusal(StatusCode::NOT_FOUND, "No such org (or not a member)"),
                NOT_SIGNED_IN,
            ],
        );
        let described = |status: &str| match operation.responses.responses.get(status) {
            Some(RefOr::T(r)) => r.description.clone(),
            _ => String::new(),
        };
        assert_eq!(
            described("404"),
            "No such org (or not a member); no such server"
        );
        assert_eq!(described("401"), NOT_SIGNED_IN.description);
    }
}
