//! Login tokens: JWT signed with HS256 (the only algorithm accepted), carrying the claims the
//! original system's clients read (`userId`, `email`, `role`) plus `jti` so a token can be revoked.

use std::time::Duration;

use chrono::{DateTime, Utc};
use fairtick_core::{Role, UserId};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{Error, Result};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Claims {
    pub user_id: i64,
    pub email: String,
    pub role: Role,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
}

impl Claims {
    pub fn user(&self) -> UserId {
        UserId(self.user_id)
    }

    pub fn expires_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.exp, 0).unwrap_or_default()
    }
}

#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl Tokens {
    pub fn new(secret: &SecretString, ttl: Duration) -> Tokens {
        let bytes = secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "iat", "jti"]);
        Tokens {
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
            validation,
            ttl,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn issue(
        &self,
        user: UserId,
        email: &str,
        role: Role,
        now: DateTime<Utc>,
    ) -> Result<(String, Claims)> {
        let mut jti = [0u8; 16];
        rand::rng().fill_bytes(&mut jti);
        let claims = Claims {
            user_id: user.0,
            email: email.to_owned(),
            role,
            iat: now.timestamp(),
            exp: now.timestamp() + self.ttl.as_secs() as i64,
            jti: hex::encode(jti),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| Error::Internal(format!("signing a token: {e}")))?;
        Ok((token, claims))
    }

    /// Checks signature, algorithm and expiry. Revocation and suspension are checked by the
    /// caller against the database.
    pub fn decode(&self, token: &str) -> Result<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|_| Error::Unauthenticated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens::new(&SecretString::from("s".repeat(32)), Duration::from_secs(60))
    }

    #[test]
    fn an_issued_token_decodes_to_its_claims() {
        let (token, claims) = tokens().issue(UserId(7), "a@b.co", Role::Admin, Utc::now()).unwrap();
        assert_eq!(tokens().decode(&token).unwrap(), claims);
        assert_eq!(claims.exp - claims.iat, 60);
    }

    #[test]
    fn expired_foreign_and_unsigned_tokens_are_refused() {
        let long_ago = Utc::now() - chrono::Duration::hours(2);
        let (expired, _) = tokens().issue(UserId(7), "a@b.co", Role::User, long_ago).unwrap();
        assert!(tokens().decode(&expired).is_err());

        let other = Tokens::new(&SecretString::from("t".repeat(32)), Duration::from_secs(60));
        let (foreign, claims) = other.issue(UserId(7), "a@b.co", Role::User, Utc::now()).unwrap();
        assert!(tokens().decode(&foreign).is_err());

        // "alg": "none" with the same claims must never pass.
        use base64::Engine;
        let b64 =
            |v: serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let unsigned = format!(
            "{}.{}.",
            b64(serde_json::json!({"alg": "none", "typ": "JWT"})),
            b64(serde_json::to_value(&claims).unwrap())
        );
        assert!(tokens().decode(&unsigned).is_err());
    }
}
