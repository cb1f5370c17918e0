//! The lists a token reads besides the profile, typed: GitHub's emails,
//! organisations and teams, GitLab's groups.

use serde::Deserialize;

use crate::auth::wire::{Lenient, Text};

/// `GET {api}/user/emails` entries (GitHub).
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct GithubEmail {
    email: Text,
    verified: Lenient<bool>,
    primary: Lenient<bool>,
}

/// The primary verified address, else any verified one, else `""`.
pub(super) fn github_verified_email(emails: Vec<GithubEmail>) -> String {
    let pick = |primary: bool| {
        emails
            .iter()
            .position(|e| e.verified.is_true() && (!primary || e.primary.is_true()))
    };
    pick(true)
        .or_else(|| pick(false))
        .and_then(|i| emails.into_iter().nth(i))
        .map(|e| e.email.into())
        .unwrap_or_default()
}

/// `GET {api}/user/orgs` entries (GitHub).
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct GithubOrg {
    login: Text,
}

/// `GET {api}/user/teams` entries (GitHub).
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct GithubTeam {
    slug: Text,
    organization: Lenient<GithubOrg>,
}

/// `GET /api/v4/groups` entries (GitLab).
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct GitlabGroup {
    full_path: Text,
}

/// GitHub groups: `org` per organisation, `org/team` per team.
pub(super) fn github_groups(orgs: Vec<GithubOrg>, teams: Vec<GithubTeam>) -> Vec<String> {
    let mut groups: Vec<String> = orgs
        .into_iter()
        .map(|o| String::from(o.login))
        .filter(|l| !l.is_empty())
        .collect();
    groups.extend(teams.into_iter().filter_map(|t| {
        let org = t.organization.or_default().login;
        (!org.is_empty() && !t.slug.is_empty()).then(|| format!("{}/{}", org.0, t.slug.0))
    }));
    groups
}

/// GitLab groups: their `full_path`.
pub(super) fn gitlab_groups(groups: Vec<GitlabGroup>) -> Vec<String> {
    groups
        .into_iter()
        .map(|g| String::from(g.full_path))
        .filter(|p| !p.is_empty())
        .collect()
}
