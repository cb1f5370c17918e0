//! Each provider's user endpoint answer, typed, and SPEC §7's identity
//! mapping from it.

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::auth::login_error::CallError;
use crate::auth::wire::{Lenient, Text, Verified};
use crate::session::Identity;

/// What a profile says: the identity, and the provider's own evidence
/// that its email is verified (what that evidence is depends on the
/// provider's [`super::EmailTrust`]; GitHub's and Microsoft's come from elsewhere).
#[derive(Debug, Default)]
pub(super) struct Profile {
    pub identity: Identity,
    pub email_verified: bool,
    /// Google Workspace's `hd`, lower-cased.
    pub hosted_domain: String,
}

/// One provider's user endpoint answer.
pub(super) trait UserInfo: DeserializeOwned {
    fn profile(self) -> Result<Profile, CallError>;
}

fn first_non_empty(a: Text, b: Text) -> String {
    if a.is_empty() { b.into() } else { a.into() }
}

fn identity(id: Text, username: Text, email: Text, nickname: Text, avatar: Text) -> Identity {
    Identity {
        id: id.into(),
        username: username.into(),
        email: email.into(),
        nickname: nickname.into(),
        avatar: avatar.into(),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Github {
    id: Text,
    login: Text,
    email: Text,
    name: Text,
    avatar_url: Text,
}

impl UserInfo for Github {
    fn profile(self) -> Result<Profile, CallError> {
        let identity = identity(self.id, self.login, self.email, self.name, self.avatar_url);
        Ok(Profile {
            identity,
            ..Default::default()
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Gitlab {
    id: Text,
    username: Text,
    email: Text,
    name: Text,
    avatar_url: Text,
    confirmed_at: Lenient<String>,
}

impl UserInfo for Gitlab {
    fn profile(self) -> Result<Profile, CallError> {
        Ok(Profile {
            email_verified: !self.confirmed_at.text().is_empty(),
            identity: identity(
                self.id,
                self.username,
                self.email,
                self.name,
                self.avatar_url,
            ),
            hosted_domain: String::new(),
        })
    }
}

/// Google, Auth0 and Okta answer OpenID userinfo; each maps it its own way.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct OpenIdUserinfo {
    sub: Text,
    email: Text,
    email_verified: Verified,
    name: Text,
    nickname: Text,
    preferred_username: Text,
    picture: Text,
    hd: Text,
}

#[derive(Deserialize)]
#[serde(transparent)]
pub(super) struct Google(OpenIdUserinfo);

#[derive(Deserialize)]
#[serde(transparent)]
pub(super) struct Auth0(OpenIdUserinfo);

#[derive(Deserialize)]
#[serde(transparent)]
pub(super) struct Okta(OpenIdUserinfo);

/// Which OpenID claim a provider's username is.
#[derive(Clone, Copy)]
enum Username {
    Email,
    Nickname,
    Preferred,
}

impl OpenIdUserinfo {
    fn mapped(self, username: Username, with_picture: bool) -> Profile {
        let username = match username {
            Username::Email => self.email.clone(),
            Username::Nickname => self.nickname,
            Username::Preferred => self.preferred_username,
        };
        let avatar = if with_picture {
            self.picture
        } else {
            Text::default()
        };
        Profile {
            identity: identity(self.sub, username, self.email, self.name, avatar),
            email_verified: self.email_verified.0,
            hosted_domain: self.hd.0.to_ascii_lowercase(),
        }
    }
}

impl UserInfo for Google {
    fn profile(self) -> Result<Profile, CallError> {
        Ok(self.0.mapped(Username::Email, true))
    }
}

impl UserInfo for Auth0 {
    fn profile(self) -> Result<Profile, CallError> {
        Ok(self.0.mapped(Username::Nickname, true))
    }
}

impl UserInfo for Okta {
    fn profile(self) -> Result<Profile, CallError> {
        Ok(self.0.mapped(Username::Preferred, false))
    }
}

/// Microsoft Graph `/me`.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct Microsoft {
    id: Text,
    user_principal_name: Text,
    mail: Text,
    display_name: Text,
}

impl UserInfo for Microsoft {
    fn profile(self) -> Result<Profile, CallError> {
        Ok(Profile {
            identity: identity(
                self.id,
                self.user_principal_name,
                self.mail,
                self.display_name,
                Text::default(),
            ),
            ..Default::default()
        })
    }
}

/// Feishu wraps every answer in `{code, msg}`; a non-zero code is an error.
pub(super) fn feishu_ok(code: &Lenient<i64>) -> Result<(), CallError> {
    match code.get() {
        Some(0) => Ok(()),
        Some(code) => Err(CallError::Feishu(*code)),
        None => Err(CallError::FeishuNoCode),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Feishu {
    code: Lenient<i64>,
    data: Lenient<FeishuUser>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct FeishuUser {
    union_id: Text,
    name: Text,
    en_name: Text,
    email: Text,
    enterprise_email: Text,
    avatar_url: Text,
}

impl UserInfo for Feishu {
    fn profile(self) -> Result<Profile, CallError> {
        feishu_ok(&self.code)?;
        let u = self.data.or_default();
        Ok(Profile {
            identity: Identity {
                id: u.union_id.into(),
                username: first_non_empty(u.en_name, u.name.clone()),
                email: first_non_empty(u.enterprise_email, u.email),
                nickname: u.name.into(),
                avatar: u.avatar_url.into(),
            },
            ..Default::default()
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Slack {
    ok: Lenient<bool>,
    user: Lenient<SlackUser>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SlackUser {
    id: Text,
    name: Text,
    email: Text,
    image_48: Text,
}

impl UserInfo for Slack {
    fn profile(self) -> Result<Profile, CallError> {
        if !self.ok.is_true() {
            return Err(CallError::SlackNotOk);
        }
        let u = self.user.or_default();
        Ok(Profile {
            identity: identity(u.id, u.name.clone(), u.email, u.name, u.image_48),
            ..Default::default()
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Kakao {
    id: Text,
    properties: Lenient<KakaoProperties>,
    kakao_account: Lenient<KakaoAccount>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct KakaoProperties {
    nickname: Text,
    profile_image: Text,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct KakaoAccount {
    email: Text,
    is_email_verified: Lenient<bool>,
    is_email_valid: Lenient<bool>,
}

impl UserInfo for Kakao {
    fn profile(self) -> Result<Profile, CallError> {
        let p = self.properties.or_default();
        let a = self.kakao_account.or_default();
        Ok(Profile {
            email_verified: a.is_email_verified.is_true() && a.is_email_valid.is_true(),
            identity: identity(
                self.id,
                p.nickname.clone(),
                a.email,
                p.nickname,
                p.profile_image,
            ),
            hosted_domain: String::new(),
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Doreamon {
    id: Text,
    username: Text,
    email: Text,
    nickname: Text,
    avatar: Text,
}

impl UserInfo for Doreamon {
    fn profile(self) -> Result<Profile, CallError> {
        Ok(Profile {
            identity: Identity {
                id: first_non_empty(self.id, self.email.clone()),
                username: self.username.into(),
                email: self.email.into(),
                nickname: self.nickname.into(),
                avatar: self.avatar.into(),
            },
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile<P: UserInfo>(v: serde_json::Value) -> Result<Profile, CallError> {
        serde_json::from_value::<P>(v).unwrap().profile()
    }

    #[test]
    fn feishu_envelope() {
        assert!(profile::<Feishu>(serde_json::json!({"code": 0})).is_ok());
        assert!(profile::<Feishu>(serde_json::json!({"code": 20003, "msg": "bad"})).is_err());
        assert!(profile::<Feishu>(serde_json::json!({})).is_err());
    }

    #[test]
    fn numeric_ids_and_nested_fields_map() {
        let kakao = profile::<Kakao>(serde_json::json!({
            "id": 2632890179u64,
            "properties": {"nickname": "홍길동"},
            "kakao_account": {"email": "h@k.example", "is_email_verified": true, "is_email_valid": true}
        }))
        .unwrap();
        assert_eq!(kakao.identity.id, "2632890179");
        assert_eq!(kakao.identity.username, "홍길동");
        assert!(kakao.email_verified);
        let github = profile::<Github>(serde_json::json!({"id": 1, "email": null})).unwrap();
        assert_eq!(
            (github.identity.id.as_str(), github.identity.email.as_str()),
            ("1", "")
        );
    }
}
