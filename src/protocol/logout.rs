//! `/logout` (§2.3): end the SSO session, and maybe send the browser back to a service.

use super::{Cas, ProtocolError};

#[derive(Debug, Default)]
pub struct LogoutOutcome {
    /// Whose session ended, if there was one.
    pub principal: Option<String>,
    /// LOGOUT-04/05: where to redirect, only for a registered service and only when the
    /// operator enabled it.
    pub redirect: Option<String>,
    /// SLO-09: URLs the logout page must have the browser request.
    pub front_channel: Vec<String>,
}

impl Cas {
    /// `session` is the TGT id from the TGC, if any. The obsolete `url` parameter is never
    /// passed here (LOGOUT-06).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn logout(
        &self,
        session: Option<&str>,
        service: Option<&str>,
    ) -> Result<LogoutOutcome, ProtocolError> {
        // LOGOUT-01/02: removing the TGT removes everything issued under it.
        let ended = match session {
            Some(id) => self.tickets.remove_tgt(id).await?,
            None => None,
        };
        // LOGOUT-07: single logout before the response; it only queues (SLO-04).
        let front_channel = ended
            .as_ref()
            .map(|tgt| self.single_logout(tgt))
            .unwrap_or_default();
        let redirect = service
            .filter(|_| self.options.follow_service_redirects)
            .filter(|s| self.resolve_service(s).is_some())
            .map(str::to_owned);
        Ok(LogoutOutcome {
            principal: ended.map(|t| t.principal.id),
            redirect,
            front_channel,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{SERVICE, cas, sso_ticket};
    use crate::clock::ManualClock;

    #[tokio::test]
    async fn logout_ends_sso_and_redirects_only_when_enabled_and_registered() {
        let mut cas = cas(ManualClock::new());
        let (tgt_id, _) = super::super::testing::sign_in(&cas, None).await;
        let out = cas.logout(Some(&tgt_id), Some(SERVICE)).await.unwrap();
        assert_eq!(out.principal.as_deref(), Some("alice"));
        assert!(out.redirect.is_none());
        assert_eq!(sso_ticket(&cas, &tgt_id, SERVICE).await, None, "the form");

        cas.options.follow_service_redirects = true;
        let out = cas.logout(None, Some(SERVICE)).await.unwrap();
        assert_eq!(out.redirect.as_deref(), Some(SERVICE));
        let out = cas
            .logout(None, Some("https://evil.example/"))
            .await
            .unwrap();
        assert!(out.redirect.is_none());
    }
}
