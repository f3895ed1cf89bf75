//! How the engine's ids are stored: an [`InstanceId`] binds and reads as its text on both
//! backends (the same `TEXT` columns as before it was typed), so rows and queries carry the
//! type and the engine stays free of SQL.

use std::borrow::Cow;

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo};
use sqlx::sqlite::{SqliteArgumentValue, SqliteTypeInfo};
use sqlx::{Database, Decode, Encode, Postgres, Sqlite, Type};

use crate::engine::ids::InstanceId;

impl Type<Sqlite> for InstanceId {
    fn type_info() -> SqliteTypeInfo {
        <str as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <str as Type<Sqlite>>::compatible(ty)
    }
}

impl Type<Postgres> for InstanceId {
    fn type_info() -> PgTypeInfo {
        <str as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <str as Type<Postgres>>::compatible(ty)
    }
}

/// As a `String` binds on SQLite: its own copy of the text.
impl<'q> Encode<'q, Sqlite> for InstanceId {
    fn encode_by_ref(
        &self,
        args: &mut Vec<SqliteArgumentValue<'q>>,
    ) -> Result<IsNull, BoxDynError> {
        args.push(SqliteArgumentValue::Text(Cow::Owned(
            self.as_str().to_owned(),
        )));
        Ok(IsNull::No)
    }
}

impl Encode<'_, Postgres> for InstanceId {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <&str as Encode<Postgres>>::encode(self.as_str(), buf)
    }
}

impl<'r, DB: Database> Decode<'r, DB> for InstanceId
where
    String: Decode<'r, DB>,
{
    fn decode(value: <DB as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        <String as Decode<'r, DB>>::decode(value).map(InstanceId::from)
    }
}
