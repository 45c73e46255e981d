//! servers: an org's hosted MCP servers.

use crate::given::*;
use domain::server::{Server, ServerEvent};
use domain::values::{AuthMode, Name, Slug};
use projections::models::servers;

#[tokio::test]
async fn servers_are_created_updated_and_archived_within_their_org() {
    let mut given = Given::new().await;
    let owner = given.user("owner@acme.dev").await;
    let org = given.org(owner, "owner@acme.dev", "acme").await;
    let other = given.org(owner, "owner@acme.dev", "other").await;
    let docs = given.server(org, owner, "guide").await;
    let api = given.server(org, owner, "helpdesk").await;
    given.server(other, owner, "elsewhere").await;
    given.project().await;
    let pool = given.pool();

    let listed: Vec<_> = servers::list(pool, org, false)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.slug, s.status, s.auth_mode))
        .collect();
    assert_eq!(
        listed,
        [
            ("guide".to_owned(), "active".to_owned(), "none".to_owned()),
            (
                "helpdesk".to_owned(),
                "active".to_owned(),
                "none".to_owned()
            ),
        ]
    );
    let by_slug = servers::get(pool, org, "guide").await.unwrap().unwrap();
    assert_eq!(by_slug.id, docs);
    assert!(by_slug.support_tool && by_slug.walkthrough_tools && !by_slug.conformance_fixtures);
    assert!(
        servers::get(pool, org, "elsewhere")
            .await
            .unwrap()
            .is_none(),
        "another org's server is not found"
    );

    let mut changed = config("guide-v2");
    changed.name = Name::parse("Guide, second edition").unwrap();
    changed.auth_mode = AuthMode::Tracking;
    changed.support_tool = false;
    given
        .append::<Server>(
            docs,
            &by(owner, org.0),
            &[ServerEvent::ServerUpdated { config: changed }],
        )
        .await;
    given
        .append::<Server>(
            api,
            &by(owner, org.0),
            &[ServerEvent::ServerArchived {
                slug: Slug::parse("helpdesk").unwrap(),
            }],
        )
        .await;
    given.project().await;
    let pool = given.pool();

    let renamed = servers::get(pool, org, &docs.to_string())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            renamed.slug.as_str(),
            renamed.name.as_str(),
            renamed.auth_mode.as_str()
        ),
        ("guide-v2", "Guide, second edition", "tracking")
    );
    assert!(!renamed.support_tool);
    assert!(renamed.updated_at > renamed.created_at);
    assert!(
        servers::get(pool, org, "guide").await.unwrap().is_none(),
        "the old slug is gone"
    );

    let active: Vec<_> = servers::list(pool, org, false)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(
        active,
        [docs],
        "archived servers are listed only when asked"
    );
    let all = servers::list(pool, org, true).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].status, "archived");
}

#[tokio::test]
async fn a_slug_reused_after_archiving_names_the_active_server() {
    let mut given = Given::new().await;
    let owner = given.user("owner@acme.dev").await;
    let org = given.org(owner, "owner@acme.dev", "acme").await;
    let old = given.server(org, owner, "guide").await;
    given
        .append::<Server>(
            old,
            &by(owner, org.0),
            &[ServerEvent::ServerArchived {
                slug: Slug::parse("guide").unwrap(),
            }],
        )
        .await;
    let new = given.server(org, owner, "guide").await;
    given.project().await;
    let found = servers::get(given.pool(), org, "guide")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, new);
    let archived = servers::get(given.pool(), org, &old.to_string())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        archived.status, "archived",
        "by id, the archived one is still there"
    );
}
