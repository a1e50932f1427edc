//! Creating and listing accounts.

use super::{Services, Signup};
use crate::email::Email;
use crate::event::{ClientInfo, EventKind, NewEvent};
use crate::ids::UserId;
use crate::notification::{Channel, NewOutboxMessage, Notification};
use crate::password::check_new_password;
use crate::store::NewUser;
use crate::user::{User, parse_display_name};
use crate::{Error, Result};
use secrecy::SecretString;
use serde_json::json;

/// What a new account is made from, as received.
pub struct NewAccount {
    /// The email, unparsed.
    pub email: String,
    /// The password, unnormalized.
    pub password: SecretString,
    /// An optional display name.
    pub display_name: Option<String>,
}

impl std::fmt::Debug for NewAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewAccount")
            .field("email", &self.email)
            .field("password", &"[REDACTED]")
            .field("display_name", &self.display_name)
            .finish()
    }
}

impl Services {
    /// Self-service sign-up (`POST /api/v1/accounts`); refused when sign-up is closed.
    pub async fn sign_up(&self, account: NewAccount, client: ClientInfo) -> Result<User> {
        if self.settings.signup == Signup::Closed {
            return Err(Error::SignupDisabled);
        }
        self.create_account(account, client).await
    }

    /// Creates an account whatever the sign-up setting (the operator's `admin create-user`).
    pub async fn create_account(&self, account: NewAccount, client: ClientInfo) -> Result<User> {
        use secrecy::ExposeSecret as _;
        let email = Email::parse(&account.email)?;
        let display_name = parse_display_name(account.display_name.as_deref(), &email)?;
        let password = check_new_password(
            account.password.expose_secret(),
            &[email.as_str(), &display_name],
        )?;
        let password_hash = self.hasher.hash(password).await?;
        let now = self.clock.now();
        let user = User {
            id: UserId::new(),
            email,
            display_name,
            created_at: now,
        };

        let mut tx = self.store.begin().await?;
        tx.insert_user(&NewUser {
            user: user.clone(),
            password_hash,
        })
        .await
        .map_err(|error| match error {
            crate::store::StoreError::Conflict(_) => {
                Error::Conflict("an account with this email already exists".into())
            }
            other => other.into(),
        })?;
        tx.insert_event(&NewEvent {
            user_id: user.id,
            kind: EventKind::AccountCreated,
            at: now,
            client,
            actor_id: None,
            details: json!({}),
        })
        .await?;
        tx.enqueue(&NewOutboxMessage {
            channel: Channel::Email,
            recipient: user.email.to_string(),
            notification: Notification::AccountCreated {
                email: user.email.to_string(),
            },
            created_at: now,
        })
        .await?;
        tx.commit().await?;
        tracing::info!(user_id = %user.id, "account created");
        Ok(user)
    }

    /// Every account, oldest first.
    pub async fn list_users(&self) -> Result<Vec<User>> {
        Ok(self.store.list_users().await?)
    }
}
