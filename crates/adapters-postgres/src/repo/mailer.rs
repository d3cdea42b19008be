use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use nexus_ports::StoreError;
use nexus_ports::security::{Mail, Mailer};

use crate::error::from_diesel;
use crate::pool::Db;
use crate::schema::mail_outbox;

/// The development mailer: records each message in `mail_outbox` and logs it, so a
/// developer (or a test) can read what would have been sent.
#[derive(Clone)]
pub struct RecordingMailer {
    db: Db,
}

impl RecordingMailer {
    #[must_use]
    pub const fn new(db: Db) -> Self {
        Self { db }
    }
}

impl Mailer for RecordingMailer {
    async fn send(&self, mail: Mail) -> Result<(), StoreError> {
        let mut conn = self.db.conn().await?;
        diesel::insert_into(mail_outbox::table)
            .values((
                mail_outbox::id.eq(uuid::Uuid::now_v7()),
                mail_outbox::recipient.eq(&mail.to),
                mail_outbox::subject.eq(&mail.subject),
                mail_outbox::body.eq(&mail.body),
            ))
            .execute(&mut conn)
            .await
            .map_err(from_diesel)?;
        tracing::info!(to = %mail.to, subject = %mail.subject, "mail recorded in mail_outbox (development mailer)");
        Ok(())
    }
}
