//! Outgoing mail as the domain sees it. The server delivers it (SMTP, or the log in dev mode).

use async_trait::async_trait;

/// One message. Its body may hold a single-use token (a reset link): deliverers must not log it
/// outside dev mode.
#[derive(Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

impl std::fmt::Debug for Mail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mail")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    /// Hands the mail over for delivery. Returns at once: delivery happens in the background, so
    /// the time a request takes does not tell whether a mail was sent.
    async fn send(&self, mail: Mail);
}
