//! Reads: each user's four lists (Yida's 我创建的 / 待我处理 / 我已处理 / 抄送我的), instance
//! details with their timeline, and instance listing. Newest first, cursor-paginated by
//! `(created_at, id)`, scoped to an organisation and optionally one app. A deleted instance
//! shows in no list (its tasks and ccs neither): Yida deletes them.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::writer::StoredEvent;
use super::{on_pool, Store, StoreError};
use crate::engine::ids::InstanceId;
use crate::engine::machine::Instance;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum List {
    /// Instances I started.
    Created,
    /// My open tasks.
    Todo,
    /// Tasks I finished.
    Done,
    /// Cc'd to me.
    Cc,
}

impl List {
    pub const ALL: [List; 4] = [List::Created, List::Todo, List::Done, List::Cc];
}

/// Filters of a list query.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub app_type: Option<String>,
    pub process_code: Option<String>,
    /// Created at or after (epoch ms).
    pub from: Option<i64>,
    /// Created before (epoch ms).
    pub to: Option<i64>,
}

impl Filter {
    pub fn new(
        app_type: Option<String>,
        process_code: Option<String>,
        from: Option<i64>,
        to: Option<i64>,
    ) -> Self {
        Filter {
            app_type,
            process_code,
            from,
            to,
        }
    }
}

/// One entry of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The task id, cc id or (for `created`) instance id. Kept for existing clients; prefer the
    /// named one below (`taskId`, as in the instance view; `ccId`).
    pub id: String,
    /// `todo` and `done`: the task id, under the name the instance view and the `task` JSON use.
    pub task_id: Option<String>,
    /// `cc`: the cc record's id, as in the instance view and the `task.cc` JSON.
    pub cc_id: Option<String>,
    pub instance_id: InstanceId,
    pub app_type: String,
    pub process_code: String,
    pub title: String,
    pub originator_id: String,
    /// The node (tasks and ccs).
    pub node_id: Option<String>,
    pub node_name: Option<String>,
    /// Task status (`open`, `finished`) or, for `created`, the instance status.
    pub status: String,
    pub action: Option<String>,
    pub instance_status: String,
    pub created_at: i64,
    pub ended_at: Option<i64>,
}

/// A page of a list.
#[derive(Debug, Clone)]
pub struct Page {
    pub items: Vec<Item>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl Page {
    /// A page from up to `limit + 1` rows: the extra row only says that there is a next page.
    fn of(mut items: Vec<Item>, limit: u32) -> Page {
        let next_cursor = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|i| encode_cursor(i.created_at, &i.id))
        } else {
            None
        };
        Page { items, next_cursor }
    }
}

/// A position in a list: the last item's `(created_at, id)`.
pub type Cursor = (i64, String);

/// A [`Cursor`] as the API gives it.
pub fn encode_cursor(created_at: i64, id: &str) -> String {
    format!("{created_at}.{id}")
}

pub fn decode_cursor(cursor: &str) -> Option<Cursor> {
    let (t, id) = cursor.split_once('.')?;
    Some((t.parse().ok()?, id.to_owned()))
}

/// Maps a row of any list query (same column names on both backends) to an [`Item`].
macro_rules! item_from_row {
    ($r:expr) => {
        Item {
            id: $r.try_get("id")?,
            task_id: None,
            cc_id: None,
            instance_id: $r.try_get("instance_id")?,
            app_type: $r.try_get("app_type")?,
            process_code: $r.try_get("process_code")?,
            title: $r.try_get("title")?,
            originator_id: $r.try_get("originator_id")?,
            node_id: $r.try_get("node_id")?,
            node_name: $r.try_get("node_name")?,
            status: $r.try_get("status")?,
            action: $r.try_get("action")?,
            instance_status: $r.try_get("instance_status")?,
            created_at: $r.try_get("created_at")?,
            ended_at: $r.try_get("ended_at")?,
        }
    };
}

/// The columns of the `created` list, also used by the instance listing.
const INSTANCE_COLUMNS: &str =
    "i.id, i.id AS instance_id, i.app_type, i.process_code, i.title, i.originator_id, \
    NULL AS node_id, NULL AS node_name, i.status, NULL AS action, i.status AS instance_status, \
    i.created_at, i.finished_at AS ended_at";

const TASK_COLUMNS: &str = "t.id, t.instance_id, t.app_type, t.process_code, i.title, i.originator_id, \
    t.node_id, t.node_name, t.status, t.action, i.status AS instance_status, t.created_at, t.ended_at";

/// The tail of every list query on table alias `a`: the [`Filter`] (`$3`–`$6`), the cursor
/// (`$7`, `$8`) and the limit (`$9`), newest first. `$1` is the organisation and `$2` the
/// list's own parameter; [`Store::list_page`] binds them all.
fn filtered_page(a: &str) -> String {
    "AND ($3 IS NULL OR {a}.app_type = $3) AND ($4 IS NULL OR {a}.process_code = $4) \
        AND ($5 IS NULL OR {a}.created_at >= $5) AND ($6 IS NULL OR {a}.created_at < $6) \
        AND ($7 IS NULL OR {a}.created_at < $7 OR ({a}.created_at = $7 AND {a}.id < $8)) \
        ORDER BY {a}.created_at DESC, {a}.id DESC LIMIT $9"
        .replace("{a}", a)
}

fn list_sql(list: List) -> String {
    match list {
        List::Created => format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances i \
             WHERE i.corp_id = $1 AND i.originator_id = $2 AND i.status <> 'deleted' {}",
            filtered_page("i")
        ),
        List::Todo | List::Done => format!(
            "SELECT {TASK_COLUMNS} FROM tasks t JOIN instances i ON i.id = t.instance_id \
             WHERE t.corp_id = $1 AND t.user_id = $2 AND t.status = '{}' AND i.status <> 'deleted' {}",
            if list == List::Todo { "open" } else { "finished" },
            filtered_page("t")
        ),
        List::Cc => format!(
            "SELECT c.id, c.instance_id, c.app_type, c.process_code, i.title, i.originator_id, c.node_id, \
             c.node_name, 'cc' AS status, NULL AS action, i.status AS instance_status, c.created_at, \
             NULL AS ended_at FROM ccs c JOIN instances i ON i.id = c.instance_id \
             WHERE c.corp_id = $1 AND c.user_id = $2 AND i.status <> 'deleted' {}",
            filtered_page("c")
        ),
    }
}

fn count_sql(list: List) -> &'static str {
    match list {
        List::Created => {
            "SELECT COUNT(*) FROM instances i WHERE i.corp_id = $1 AND i.originator_id = $2 \
                          AND i.status <> 'deleted' AND ($3 IS NULL OR i.app_type = $3)"
        }
        // A deleted instance's task and cc rows are deleted with it (the writer), so these
        // count the user's rows alone: an index range, no lookup of each row's instance.
        List::Todo => {
            "SELECT COUNT(*) FROM tasks t WHERE t.corp_id = $1 AND t.user_id = $2 \
                       AND t.status = 'open' AND ($3 IS NULL OR t.app_type = $3)"
        }
        List::Done => {
            "SELECT COUNT(*) FROM tasks t WHERE t.corp_id = $1 AND t.user_id = $2 \
                       AND t.status = 'finished' AND ($3 IS NULL OR t.app_type = $3)"
        }
        List::Cc => {
            "SELECT COUNT(*) FROM ccs c WHERE c.corp_id = $1 AND c.user_id = $2 \
                     AND ($3 IS NULL OR c.app_type = $3)"
        }
    }
}

impl Store {
    /// One page of a user's list.
    pub async fn task_list(
        &self,
        corp_id: &str,
        user_id: &str,
        list: List,
        filter: &Filter,
        cursor: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Page, StoreError> {
        let mut rows = self
            .list_page(
                &list_sql(list),
                corp_id,
                Some(user_id),
                filter,
                cursor,
                limit,
            )
            .await?;
        for item in &mut rows {
            match list {
                List::Todo | List::Done => item.task_id = Some(item.id.clone()),
                List::Cc => item.cc_id = Some(item.id.clone()),
                List::Created => {}
            }
        }
        Ok(Page::of(rows, limit))
    }

    /// The size of each list.
    pub async fn task_counts(
        &self,
        corp_id: &str,
        user_id: &str,
        app_type: Option<&str>,
    ) -> Result<[(List, i64); 4], StoreError> {
        let mut out = [(List::Created, 0); 4];
        for (slot, list) in out.iter_mut().zip(List::ALL) {
            let n: i64 = on_pool!(self, |pool| {
                sqlx::query_scalar(count_sql(list))
                    .bind(corp_id)
                    .bind(user_id)
                    .bind(app_type)
                    .fetch_one(pool)
                    .await?
            });
            *slot = (list, n);
        }
        Ok(out)
    }

    /// An instance's state (deleted instances included: their status says so).
    pub async fn instance(
        &self,
        corp_id: &str,
        id: &InstanceId,
    ) -> Result<Option<Instance>, StoreError> {
        let state: Option<String> = on_pool!(self, |pool| {
            sqlx::query_scalar("SELECT state FROM instances WHERE id = $1 AND corp_id = $2")
                .bind(id)
                .bind(corp_id)
                .fetch_optional(pool)
                .await?
        });
        state
            .map(|s| {
                serde_json::from_str(&s)
                    .map_err(|e| StoreError::Corrupt(format!("instance state: {e}")))
            })
            .transpose()
    }

    /// An instance's events, in `seq` order.
    pub async fn instance_events(
        &self,
        corp_id: &str,
        id: &InstanceId,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows: Vec<(String, i64, String, Option<String>, i64)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, seq, kind, task_id, created_at FROM events WHERE instance_id = $1 AND corp_id = $2 ORDER BY seq",
            )
            .bind(id)
            .bind(corp_id)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|(id, seq, kind, task_id, created_at)| {
                Ok(StoredEvent {
                    id,
                    seq,
                    kind: kind.parse()?,
                    task_id,
                    created_at,
                })
            })
            .collect()
    }

    /// Instances of an organisation, newest first, with optional filters.
    pub async fn instance_list(
        &self,
        corp_id: &str,
        status: Option<&str>,
        filter: &Filter,
        cursor: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Page, StoreError> {
        let sql = format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances i WHERE i.corp_id = $1 AND ($2 IS NULL OR i.status = $2) {}",
            filtered_page("i")
        );
        let items = self
            .list_page(&sql, corp_id, status, filter, cursor, limit)
            .await?;
        Ok(Page::of(items, limit))
    }

    /// Runs a list query ending in [`filtered_page`]: up to `limit + 1` items (the extra one
    /// only says that there is a next page, see [`Page::of`]).
    async fn list_page(
        &self,
        sql: &str,
        corp_id: &str,
        own: Option<&str>,
        filter: &Filter,
        cursor: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<Item>, StoreError> {
        let (cursor_at, cursor_id) = cursor.unzip();
        Ok(on_pool!(self, |pool| {
            sqlx::query(sql)
                .bind(corp_id)
                .bind(own)
                .bind(&filter.app_type)
                .bind(&filter.process_code)
                .bind(filter.from)
                .bind(filter.to)
                .bind(cursor_at)
                .bind(&cursor_id)
                .bind(i64::from(limit) + 1)
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(|r| Ok(item_from_row!(r)))
                .collect::<Result<Vec<Item>, sqlx::Error>>()?
        }))
    }
}
