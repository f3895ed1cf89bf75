//! The API document's schemas of the domain types the API sends and takes as they are (their
//! serde form is their wire form: engine enums, connectors and strategies, backfill requests,
//! receiver checks). Each is described by a mirror here — a type that only derives `ToSchema`,
//! is never built, and names the same fields with the same serde attributes — so the layers
//! below know nothing of the API document. [`schema_as!`] makes the domain type answer with its
//! mirror's schema, so handlers keep naming the domain type in `body = …`.
#![allow(dead_code)] // The mirrors are read by the `ToSchema` derive only.

use utoipa::ToSchema;

/// `impl ToSchema for $domain` with `$mirror`'s name and schema (and the schemas it refers to).
macro_rules! schema_as {
    ($($domain:ty => $mirror:ty),* $(,)?) => {$(
        impl utoipa::PartialSchema for $domain {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                <$mirror as utoipa::PartialSchema>::schema()
            }
        }
        impl utoipa::ToSchema for $domain {
            fn name() -> std::borrow::Cow<'static, str> {
                <$mirror as utoipa::ToSchema>::name()
            }
            fn schemas(
                schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>,
            ) {
                <$mirror as utoipa::ToSchema>::schemas(schemas)
            }
        }
    )*};
}

schema_as!(crate::store::jobs::BackfillRequest => BackfillRequest);

#[derive(ToSchema)]
#[serde(tag = "mode", rename_all = "camelCase", deny_unknown_fields)]
enum BackfillRequest {
    /// Every task open now (its `task.created`).
    Open,
    /// Every event created in `[from, to)` (epoch ms).
    Range { from: i64, to: i64 },
}
