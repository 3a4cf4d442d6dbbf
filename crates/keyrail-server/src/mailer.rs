//! Delivering mail: SMTP (lettre) when `smtp_url` is set, else the log (dev mode's outbox).
//! Mails are queued and sent by a background task, so a request never waits on SMTP and its
//! timing does not tell whether a mail went out.

use std::time::Duration;

use async_trait::async_trait;
use keyrail_core::mail::{Mail, Mailer};
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::sync::mpsc;

/// The queue in front of the delivery task.
pub struct QueuedMailer {
    tx: mpsc::Sender<Mail>,
}

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// Dev mode: the mail, token included, is written to the log.
    Log,
    /// Neither SMTP nor dev mode: the mail cannot go anywhere; this is logged without its body.
    Nowhere,
}

impl QueuedMailer {
    /// Starts the delivery task. `smtp_url` like `smtp://host:25`, `smtps://host:465` or
    /// `smtp://host:587?tls=required` (lettre's URL forms).
    pub fn start(smtp_url: &str, from: &str, dev: bool) -> Result<Self, String> {
        let transport = if !smtp_url.is_empty() {
            let t = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
                .map_err(|e| format!("smtp_url: {e}"))?
                .timeout(Some(Duration::from_secs(10)))
                .build();
            Transport::Smtp(t)
        } else if dev {
            Transport::Log
        } else {
            Transport::Nowhere
        };
        let from: Mailbox = from
            .parse()
            .map_err(|e| format!("mail_from {from:?}: {e}"))?;
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(deliver(rx, transport, from));
        Ok(Self { tx })
    }
}

#[async_trait]
impl Mailer for QueuedMailer {
    async fn send(&self, mail: Mail) {
        if self.tx.try_send(mail).is_err() {
            tracing::error!("mail queue full or closed; a mail was dropped");
        }
    }
}

async fn deliver(mut rx: mpsc::Receiver<Mail>, transport: Transport, from: Mailbox) {
    while let Some(mail) = rx.recv().await {
        match &transport {
            Transport::Log => {
                tracing::info!(to = %mail.to, subject = %mail.subject, body = %mail.body, "outbox (dev mode): mail not sent");
            }
            Transport::Nowhere => {
                tracing::warn!(subject = %mail.subject, "no smtp_url configured and not in dev mode: mail dropped");
            }
            Transport::Smtp(smtp) => {
                let message = match mail.to.parse::<Mailbox>().map(|to| {
                    Message::builder()
                        .from(from.clone())
                        .to(to)
                        .subject(mail.subject.clone())
                        .body(mail.body.clone())
                }) {
                    Ok(Ok(m)) => m,
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "cannot build mail");
                        continue;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "bad recipient address");
                        continue;
                    }
                };
                let mut delay = Duration::from_secs(1);
                for attempt in 1..=3 {
                    match smtp.send(message.clone()).await {
                        Ok(_) => {
                            tracing::info!(subject = %mail.subject, "mail sent");
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(attempt, error = %e, "mail delivery failed");
                            tokio::time::sleep(delay).await;
                            delay *= 4;
                        }
                    }
                }
            }
        }
    }
}
