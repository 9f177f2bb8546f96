//! Several sources tried in order: the first that accepts the credentials wins.

use std::sync::Arc;

use async_trait::async_trait;

use super::Principal;
use super::{AuthError, Authenticator, SourceHealth};

#[derive(Debug)]
pub struct Chain {
    sources: Vec<Arc<dyn Authenticator>>,
}

impl Chain {
    pub fn new(sources: Vec<Arc<dyn Authenticator>>) -> Self {
        Self { sources }
    }
}

#[async_trait]
impl Authenticator for Chain {
    /// A source that knows the account and reports its state (locked, expired…) ends the
    /// search; a source that does not know the user or refuses the password passes to
    /// the next. If every source refused but one could not be asked, the answer is
    /// "unavailable": the user may well live in the source that is down.
    async fn authenticate(&self, username: &str, password: &str) -> Result<Principal, AuthError> {
        let mut unavailable = None;
        for source in &self.sources {
            match source.authenticate(username, password).await {
                Ok(principal) => return Ok(principal),
                Err(AuthError::InvalidCredentials) => {}
                Err(AuthError::Unavailable(why)) => {
                    unavailable.get_or_insert(why);
                }
                Err(state) => return Err(state),
            }
        }
        match unavailable {
            Some(why) => Err(AuthError::Unavailable(why)),
            None => Err(AuthError::InvalidCredentials),
        }
    }

    async fn health(&self) -> Vec<SourceHealth> {
        let mut all = Vec::new();
        for source in &self.sources {
            all.extend(source.health().await);
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[derive(Debug)]
    struct Fixed(Result<&'static str, AuthError>);

    #[async_trait]
    impl Authenticator for Fixed {
        async fn authenticate(&self, _: &str, _: &str) -> Result<Principal, AuthError> {
            self.0.clone().map(|id| Principal {
                id: id.into(),
                attributes: BTreeMap::new(),
            })
        }
    }

    fn chain(results: Vec<Result<&'static str, AuthError>>) -> Chain {
        Chain::new(
            results
                .into_iter()
                .map(|r| Arc::new(Fixed(r)) as Arc<dyn Authenticator>)
                .collect(),
        )
    }

    #[tokio::test]
    async fn sources_are_tried_in_order() {
        let c = chain(vec![
            Err(AuthError::InvalidCredentials),
            Ok("second"),
            Ok("third"),
        ]);
        assert_eq!(c.authenticate("u", "p").await.unwrap().id, "second");
        let c = chain(vec![Ok("first"), Ok("second")]);
        assert_eq!(c.authenticate("u", "p").await.unwrap().id, "first");
    }

    #[tokio::test]
    async fn account_state_stops_the_search_and_an_outage_is_not_a_wrong_password() {
        let c = chain(vec![Err(AuthError::AccountLocked), Ok("second")]);
        assert!(matches!(
            c.authenticate("u", "p").await.unwrap_err(),
            AuthError::AccountLocked
        ));
        let c = chain(vec![
            Err(AuthError::unavailable(super::super::SourceError::Verifier(
                "down",
            ))),
            Err(AuthError::InvalidCredentials),
        ]);
        assert!(matches!(
            c.authenticate("u", "p").await.unwrap_err(),
            AuthError::Unavailable(_)
        ));
        let c = chain(vec![
            Err(AuthError::unavailable(super::super::SourceError::Verifier(
                "down",
            ))),
            Ok("second"),
        ]);
        assert_eq!(c.authenticate("u", "p").await.unwrap().id, "second");
        let c = chain(vec![]);
        assert!(matches!(
            c.authenticate("u", "p").await.unwrap_err(),
            AuthError::InvalidCredentials
        ));
    }
}
