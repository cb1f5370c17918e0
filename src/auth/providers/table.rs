//! The provider table: one row per OAuth2 provider of SPEC §7 with what
//! the rest of the crate asks about it (scopes, PKCE, email trust, groups).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Github,
    Gitlab,
    Google,
    Microsoft,
    Feishu,
    Slack,
    Kakao,
    Auth0,
    Okta,
    Doreamon,
}

/// How a provider vouches for a user's email (SPEC §13.1): anything it
/// does not vouch for never counts for `allow.emails` / `allow.domains`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmailTrust {
    /// Not at all: such a provider has no verified email.
    None,
    /// `GET {user}/emails` entries marked `verified` (GitHub).
    GithubVerified,
    /// The profile's `confirmed_at` is set (GitLab).
    ConfirmedAt,
    /// `email_verified: true` in the profile (OpenID userinfo: Auth0, Okta).
    EmailVerified,
    /// Google: `email_verified: true`; `domains` only from the Workspace
    /// `hd` claim.
    EmailVerifiedHostedDomain,
    /// Microsoft: `mail` (or the UPN) only with a fixed tenant id; with
    /// `common`/`organizations`/`consumers` any tenant could claim any address.
    FixedTenant,
    /// Kakao: `kakao_account.is_email_verified` and `is_email_valid`.
    KakaoVerified,
}

/// Where a provider's groups come from in oauth2 mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupSource {
    None,
    /// `GET {api}/user/orgs` (`org`) and `GET {api}/user/teams` (`org/team`).
    GithubOrgsTeams,
    /// `GET /api/v4/groups` (`full_path`).
    GitlabGroups,
}

/// Everything known about one provider, in one row.
#[derive(Debug)]
pub struct Descriptor {
    pub kind: Kind,
    pub name: &'static str,
    /// Scopes that fetch an identity with the default endpoints (SPEC §7).
    pub default_scopes: &'static [&'static str],
    /// Accepts PKCE (S256) on the authorization-code flow.
    pub pkce: bool,
    pub email_trust: EmailTrust,
    pub groups: GroupSource,
    /// Extra scope to ask for when a policy reads groups.
    pub groups_scope: Option<&'static str>,
    /// Anyone on earth can have an account (a route without `allow` admits them all).
    pub public: bool,
}

// One positional row per provider keeps the table readable at a glance.
#[allow(clippy::too_many_arguments)]
const fn row(
    kind: Kind,
    name: &'static str,
    default_scopes: &'static [&'static str],
    pkce: bool,
    email_trust: EmailTrust,
    groups: GroupSource,
    groups_scope: Option<&'static str>,
    public: bool,
) -> Descriptor {
    Descriptor {
        kind,
        name,
        default_scopes,
        pkce,
        email_trust,
        groups,
        groups_scope,
        public,
    }
}

const OPENID: &[&str] = &["openid", "profile", "email"];

/// The provider table. GitLab and Microsoft count as public on their
/// shared instances (gitlab.com, tenant `common`): see [`Descriptor::public`].
#[rustfmt::skip]
pub static PROVIDERS: [Descriptor; 10] = [
    row(Kind::Github, "github", &["user:email"], false, EmailTrust::GithubVerified, GroupSource::GithubOrgsTeams, Some("read:org"), true),
    row(Kind::Gitlab, "gitlab", &["read_user"], true, EmailTrust::ConfirmedAt, GroupSource::GitlabGroups, Some("read_api"), true),
    row(Kind::Google, "google", OPENID, true, EmailTrust::EmailVerifiedHostedDomain, GroupSource::None, None, true),
    row(Kind::Microsoft, "microsoft", OPENID, true, EmailTrust::FixedTenant, GroupSource::None, None, true),
    row(Kind::Feishu, "feishu", &[], false, EmailTrust::None, GroupSource::None, None, false),
    row(Kind::Slack, "slack", &["identity.basic", "identity.email", "identity.avatar"], false, EmailTrust::None, GroupSource::None, None, true),
    row(Kind::Kakao, "kakao", &[], true, EmailTrust::KakaoVerified, GroupSource::None, None, true),
    row(Kind::Auth0, "auth0", OPENID, true, EmailTrust::EmailVerified, GroupSource::None, None, false),
    row(Kind::Okta, "okta", OPENID, true, EmailTrust::EmailVerified, GroupSource::None, None, false),
    row(Kind::Doreamon, "doreamon", &["openid", "email", "profile"], true, EmailTrust::None, GroupSource::None, None, false),
];

impl Kind {
    /// The provider a config names (the config walk's one parse).
    pub fn parse(name: &str) -> Option<Self> {
        PROVIDERS.iter().find(|d| d.name == name).map(|d| d.kind)
    }

    pub fn descriptor(self) -> &'static Descriptor {
        PROVIDERS
            .iter()
            .find(|d| d.kind == self)
            .expect("every kind has a row")
    }

    pub fn as_str(self) -> &'static str {
        self.descriptor().name
    }
}

/// Microsoft tenants that admit accounts of any tenant.
pub fn is_multi_tenant(tenant: Option<&str>) -> bool {
    matches!(
        tenant.unwrap_or("common"),
        "common" | "organizations" | "consumers"
    )
}
