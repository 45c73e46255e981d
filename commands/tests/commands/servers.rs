//! servers: slugs claimed platform-wide, released on a rename or an archive; roles checked on
//! the write model.

use crate::given::*;
use commands::services::servers;
use domain::server::{ServerChanges, ServerError};
use domain::values::Slug;
use eventstore::index::{self, KeyKind};
use eventstore::ExecuteError;
use uuid::Uuid;

async fn slug_owner(given: &Given, slug: &str) -> Option<Uuid> {
    index::owner_of(given.store.pool(), KeyKind::ServerSlug, slug)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_server_slug_is_claimed_moved_on_rename_and_freed_on_archive() {
    let given = Given::new().await;
    let owner = given.user("owner@acme.dev").await;
    let acme = given.org(owner, "owner@acme.dev", "acme").await;
    let globex = given.org(owner, "owner@acme.dev", "globex").await;
    let guide = given.server(acme, owner, "guide").await;
    assert_eq!(slug_owner(&given, "guide").await, Some(guide));

    let clash = servers::create(
        &given.store,
        globex,
        Uuid::new_v4(),
        owner,
        config("guide"),
        &as_user(owner),
    )
    .await;
    assert!(
        matches!(
            clash,
            Err(ExecuteError::KeyTaken {
                kind: KeyKind::ServerSlug
            })
        ),
        "{clash:?}"
    );

    let rename = ServerChanges {
        slug: Some(Slug::parse("handbook").unwrap()),
        ..ServerChanges::default()
    };
    servers::update(&given.store, acme, guide, owner, rename, &as_user(owner))
        .await
        .unwrap();
    assert_eq!(slug_owner(&given, "handbook").await, Some(guide));
    assert_eq!(
        slug_owner(&given, "guide").await,
        None,
        "the old slug is released"
    );
    let reuse = given.server(globex, owner, "guide").await;
    assert_eq!(slug_owner(&given, "guide").await, Some(reuse));

    servers::archive(&given.store, acme, guide, owner, &as_user(owner))
        .await
        .unwrap();
    assert_eq!(slug_owner(&given, "handbook").await, None);
    let after = servers::update(
        &given.store,
        acme,
        guide,
        owner,
        ServerChanges::default(),
        &as_user(owner),
    )
    .await;
    assert!(
        matches!(after, Err(ExecuteError::Domain(ServerError::Archived))),
        "{after:?}"
    );
}

#[tokio::test]
async fn members_cannot_change_servers_and_other_orgs_do_not_find_them() {
    let given = Given::new().await;
    let owner = given.user("owner@acme.dev").await;
    let member = given.user("member@acme.dev").await;
    let outsider = given.user("outsider@globex.dev").await;
    let acme = given.org(owner, "owner@acme.dev", "acme").await;
    let globex = given.org(outsider, "outsider@globex.dev", "globex").await;
    given.member(acme, owner, "member@acme.dev", "member").await;
    let guide = given.server(acme, owner, "guide").await;

    let by_member = servers::create(
        &given.store,
        acme,
        Uuid::new_v4(),
        member,
        config("mine"),
        &as_user(member),
    )
    .await;
    assert!(matches!(
        by_member,
        Err(ExecuteError::Domain(ServerError::NotAllowed))
    ));
    let archive = servers::archive(&given.store, acme, guide, member, &as_user(member)).await;
    assert!(matches!(
        archive,
        Err(ExecuteError::Domain(ServerError::NotAllowed))
    ));
    let by_outsider =
        servers::archive(&given.store, acme, guide, outsider, &as_user(outsider)).await;
    assert!(matches!(
        by_outsider,
        Err(ExecuteError::Domain(ServerError::NotFound))
    ));
    let through_own_org =
        servers::archive(&given.store, globex, guide, outsider, &as_user(outsider)).await;
    assert!(
        matches!(
            through_own_org,
            Err(ExecuteError::Domain(ServerError::NotFound))
        ),
        "a server of another org is not found through one's own"
    );
    assert_eq!(slug_owner(&given, "guide").await, Some(guide));
    assert_eq!(
        slug_owner(&given, "mine").await,
        None,
        "a refused create claims nothing"
    );
}
