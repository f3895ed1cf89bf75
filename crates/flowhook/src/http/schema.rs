//! The API document's schemas of the domain types the API sends and takes as they are (their
//! serde form is their wire form: engine enums, connectors and strategies, backfill requests,
//! receiver checks). Each is described by a mirror here — a type that only derives `ToSchema`,
//! is never built, and names the same fields with the same serde attributes — so the layers
//! below know nothing of the API document. [`schema_as!`] makes the domain type answer with its
//! mirror's schema, so handlers keep naming the domain type in `body = …`.
#![allow(dead_code)] // The mirrors are read by the `ToSchema` derive only.

use std::collections::BTreeMap;

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

schema_as!(crate::engine::definition::Problem => Problem);

/// One problem of a document, with where it is.
#[derive(ToSchema)]
struct Problem {
    /// JSON path, e.g. `$.nodes[1].branches[0].condition`.
    path: String,
    message: String,
}

schema_as!(
    crate::delivery::check::Grade => Grade,
    crate::delivery::check::ProbeResult => ProbeResult,
    crate::delivery::check::Scorecard => Scorecard,
);

/// A probe's grade.
#[derive(ToSchema)]
#[serde(rename_all = "UPPERCASE")]
enum Grade {
    Pass,
    Warn,
    Fail,
}

/// One probe's result, with its evidence.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
struct ProbeResult {
    /// Stable name: `created`, `duplicate`, `out_of_order`, `forged_sign`, `replay`,
    /// `wrong_token`, `missing_sign`, `kinds_form`, `kinds_json`, `concurrency`, `tls`, `cleanup`.
    probe: String,
    /// What was sent and what a correct receiver answers.
    expectation: String,
    grade: Grade,
    /// What happened, in a few words.
    verdict: String,
    /// The deciding request's answer status (none: no answer).
    status: Option<u16>,
    /// The first 200 bytes of that answer (or why there was none); secrets scrubbed.
    answer: Option<String>,
    latency_ms: Option<u64>,
    /// For WARN and FAIL: what to do, and the README section that says how.
    advice: Option<String>,
}

/// The result of one check.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
struct Scorecard {
    /// `check-<run>`: the prefix of every id the probes used.
    run: String,
    /// Where `task.created` probes went (credentials masked).
    url: String,
    started_at: i64,
    duration_ms: u64,
    /// The probe instances (`formInstId`), all deleted by the last probe.
    instances: Vec<String>,
    /// The users the probe tasks and cc records were assigned to.
    users: Vec<String>,
    passed: u32,
    warned: u32,
    failed: u32,
    probes: Vec<ProbeResult>,
}

schema_as!(
    crate::integration::connectors::Auth => Auth,
    crate::integration::connectors::KeyLocation => KeyLocation,
    crate::integration::connectors::ConnectorInput => ConnectorInput,
    crate::integration::connectors::ConnectorUpdate => ConnectorUpdate,
    crate::integration::connectors::Connector => Connector,
    crate::integration::connectors::Encoding => Encoding,
    crate::integration::connectors::ActionInput => ActionInput,
    crate::integration::connectors::Action => Action,
    crate::integration::connectors::EventActions => EventActions,
    crate::integration::connectors::Strategy => Strategy,
);

/// Connector authentication, as Yida's HTTP connector offers.
#[derive(ToSchema)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
enum Auth {
    None,
    Basic {
        username: String,
        password: String,
    },
    /// An API key in a header or in the query string.
    ApiKey {
        #[serde(rename = "in")]
        location: KeyLocation,
        name: String,
        value: String,
    },
    Bearer {
        token: String,
    },
}

#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
enum KeyLocation {
    Header,
    Query,
}

#[derive(ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConnectorInput {
    name: String,
    /// `http://` or `https://`; action paths are appended.
    base_url: String,
    #[serde(default)]
    auth: Auth,
    #[serde(default)]
    default_headers: BTreeMap<String, String>,
    /// Total time for one attempt, 100 ms to 60 s (default 10 s).
    #[serde(default)]
    timeout_ms: u64,
    /// Requests in flight to this connector's endpoint at most, 1 to 256 (default 8): a slow or
    /// hanging endpoint holds no more of a node's delivery slots than this.
    #[serde(default)]
    max_concurrency: u32,
}

/// An edit of a connector (`PUT`): the whole connector as on creation, except that the
/// credentials are write-only — `auth` omitted keeps the stored authentication, and a secret
/// sent empty or exactly as shown (masked) keeps the stored secret
/// ([`Auth::keeping_secrets_of`]); so do a base URL password and a default header value sent
/// as shown (`***`), so that a connector read and sent back unchanged keeps its secrets.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConnectorUpdate {
    name: String,
    /// `http://` or `https://`; action paths are appended. Applies from the next delivery.
    base_url: String,
    /// Omitted: the stored authentication stays.
    #[serde(default)]
    auth: Option<Auth>,
    #[serde(default)]
    default_headers: BTreeMap<String, String>,
    /// Total time for one attempt, 100 ms to 60 s (default 10 s).
    #[serde(default)]
    timeout_ms: u64,
    /// Requests in flight to this connector's endpoint at most, 1 to 256 (default 8): a slow or
    /// hanging endpoint holds no more of a node's delivery slots than this.
    #[serde(default)]
    max_concurrency: u32,
}

/// A connector. Its fields hold the values sent; it *serialises* masked — the password of
/// `baseUrl`, every credential and every default header value show as `***` — so whatever shows
/// a connector (API, console) cannot show a secret; its `Debug` is masked the same way, for logs.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
struct Connector {
    id: String,
    corp_id: String,
    name: String,
    /// Shown with the password of its userinfo masked.
    base_url: String,
    /// Masked when shown.
    auth: Auth,
    /// Values masked when shown: they often carry credentials.
    default_headers: BTreeMap<String, String>,
    timeout_ms: u64,
    /// Requests in flight to its endpoint at most.
    max_concurrency: u32,
    created_at: i64,
    /// Set while paused (after a `410 Gone`, or by an operator): nothing is sent until resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    paused_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    paused_reason: Option<String>,
}

#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
enum Encoding {
    /// application/x-www-form-urlencoded (Yida's).
    Form,
    Json,
}

#[derive(ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ActionInput {
    connector_id: String,
    name: String,
    /// Only POST, as Yida's connector actions.
    #[serde(default)]
    method: String,
    /// Appended to the connector's base URL, e.g. `/callbacks/created`.
    path: String,
    #[serde(default)]
    encoding: Encoding,
}

#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
struct Action {
    id: String,
    corp_id: String,
    connector_id: String,
    name: String,
    method: String,
    path: String,
    encoding: Encoding,
    created_at: i64,
}

/// Which action receives each event; absent = not pushed.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EventActions {
    created: Option<String>,
    finished: Option<String>,
    cancelled: Option<String>,
    deleted: Option<String>,
    cc: Option<String>,
}

/// The approval-task sync strategy of an organisation.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Strategy {
    #[serde(default)]
    enabled: bool,
    #[serde(default)]
    actions: EventActions,
    /// Only these applications (default: all).
    #[serde(default)]
    app_types: Option<Vec<String>>,
    /// Only these processes (default: all).
    #[serde(default)]
    process_codes: Option<Vec<String>>,
    /// Deliver each instance's events in `seq` order (default on).
    #[serde(default)]
    ordered: bool,
    /// Also sign with Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    #[serde(default)]
    standard_webhooks: bool,
}

/// The mirrors cannot drift from the types they describe: a JSON object with exactly a mirror's
/// properties is taken by its domain type (which refuses unknown fields where the API does), and a
/// domain type that is sent serialises to exactly those properties again.
#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde::de::DeserializeOwned;
    use serde::Serialize;
    use serde_json::{json, Value};
    use utoipa::openapi::schema::Schema;
    use utoipa::openapi::RefOr;
    use utoipa::PartialSchema;

    use crate::delivery::check::{ProbeResult, Scorecard};
    use crate::integration::connectors::{
        Action, ActionInput, Connector, ConnectorInput, ConnectorUpdate, EventActions, Strategy,
    };

    fn properties<T: PartialSchema>() -> BTreeSet<String> {
        match T::schema() {
            RefOr::T(Schema::Object(o)) => o.properties.keys().cloned().collect(),
            _ => panic!("not an object schema"),
        }
    }

    fn keys(v: &Value) -> BTreeSet<String> {
        v.as_object().expect("an object").keys().cloned().collect()
    }

    /// `example` names every property of `T`'s schema, is taken by `T`, and comes back with the
    /// same keys. Returns the value `T` made of it.
    fn taken<T: PartialSchema + DeserializeOwned>(example: Value) -> T {
        assert_eq!(
            keys(&example),
            properties::<T>(),
            "the example is the schema's"
        );
        serde_json::from_value(example).expect("the domain type takes what its schema says")
    }

    fn round_trips<T: PartialSchema + DeserializeOwned + Serialize>(example: Value) {
        let value: T = taken(example);
        let sent = serde_json::to_value(&value).expect("serialises");
        assert_eq!(
            keys(&sent),
            properties::<T>(),
            "what is sent is what the schema says"
        );
    }

    fn connector_fields() -> Value {
        json!({"name": "n", "baseUrl": "http://127.0.0.1:9", "auth": {"type": "bearer", "token": "t"},
               "defaultHeaders": {"x-a": "b"}, "timeoutMs": 1000, "maxConcurrency": 8})
    }

    #[test]
    fn inputs_take_exactly_their_schemas_properties() {
        taken::<ConnectorInput>(connector_fields());
        taken::<ConnectorUpdate>(connector_fields());
        taken::<ActionInput>(json!({"connectorId": "c", "name": "n", "method": "POST",
            "path": "/p", "encoding": "json"}));
        // An unknown field is refused, so a property the mirror has and the type lacks fails.
        let mut extra = connector_fields();
        extra["extra"] = json!(1);
        assert!(serde_json::from_value::<ConnectorInput>(extra).is_err());
    }

    #[test]
    fn what_is_sent_has_exactly_its_schemas_properties() {
        let mut connector = connector_fields();
        let more = json!({"id": "c", "corpId": "o", "createdAt": 1, "pausedAt": 2,
                          "pausedReason": "410"});
        connector
            .as_object_mut()
            .unwrap()
            .extend(more.as_object().unwrap().clone());
        round_trips::<Connector>(connector);
        round_trips::<Action>(
            json!({"id": "a", "corpId": "o", "connectorId": "c", "name": "n",
            "method": "POST", "path": "/p", "encoding": "form", "createdAt": 1}),
        );
        round_trips::<EventActions>(json!({"created": "a", "finished": "a", "cancelled": "a",
            "deleted": "a", "cc": "a"}));
        round_trips::<Strategy>(json!({"enabled": true, "actions": {"created": "a"},
            "appTypes": ["APP"], "processCodes": ["p"], "ordered": true,
            "standardWebhooks": false}));
        let probe = json!({"probe": "created", "expectation": "e", "grade": "PASS",
            "verdict": "v", "status": 200, "answer": "ok", "latencyMs": 3, "advice": "a"});
        round_trips::<ProbeResult>(probe.clone());
        round_trips::<Scorecard>(json!({"run": "check-1", "url": "http://127.0.0.1:9",
            "startedAt": 1, "durationMs": 2, "instances": ["i"], "users": ["u"], "passed": 1,
            "warned": 0, "failed": 0, "probes": [probe]}));
    }
}
