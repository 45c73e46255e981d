//! walkthroughs: authoring by managers only, publishing versions, assignment to live servers of
//! the same org.

use crate::given::*;
use commands::services::{servers, walkthroughs};
use domain::walkthrough::{
    Assignment, StepContent, WalkthroughCommand as C, WalkthroughError, WalkthroughEvent,
};
use eventstore::ExecuteError;
use uuid::Uuid;

fn content(title: &str) -> StepContent {
    StepContent::parse(title, "Do it", None, &[]).unwrap()
}

pub struct Authored {
    pub org: Uuid,
    pub owner: Uuid,
    pub server: Uuid,
    pub wt: Uuid,
    pub steps: Vec<Uuid>,
}

/// A walkthrough of `n` steps, published and assigned to a server.
pub async fn published(given: &Given, n: usize) -> Authored {
    let owner = given.user("owner@acme.dev").await;
    let org = given.org(owner, "owner@acme.dev", "acme").await;
    let server = given.server(org, owner, "guide").await;
    let wt = Uuid::new_v4();
    let meta = as_user(owner);
    walkthroughs::create(
        &given.store,
        org,
        wt,
        owner,
        "Quickstart".into(),
        None,
        &meta,
    )
    .await
    .unwrap();
    let steps: Vec<Uuid> = (0..n).map(|_| Uuid::new_v4()).collect();
    for (i, step) in steps.iter().enumerate() {
        walkthroughs::change(&given.store, org, wt, owner, &meta, || C::AddStep {
            step_id: *step,
            after: None,
            step: content(&format!("Step {i}")),
        })
        .await
        .unwrap();
    }
    walkthroughs::change(&given.store, org, wt, owner, &meta, || C::Publish)
        .await
        .unwrap();
    walkthroughs::change_assignment(&given.store, org, wt, server, owner, &meta, || C::Assign {
        server_id: server,
        assignment: Assignment {
            display_order: 0,
            enabled: true,
        },
    })
    .await
    .unwrap();
    Authored {
        org,
        owner,
        server,
        wt,
        steps,
    }
}

#[tokio::test]
async fn publishing_makes_versions_only_of_changes_and_republishes_an_unpublished_one() {
    let given = Given::new().await;
    let a = published(&given, 2).await;
    let meta = as_user(a.owner);
    let publish = || walkthroughs::change(&given.store, a.org, a.wt, a.owner, &meta, || C::Publish);
    assert!(matches!(
        publish().await,
        Err(ExecuteError::Domain(WalkthroughError::NothingToPublish(1)))
    ));
    walkthroughs::change(&given.store, a.org, a.wt, a.owner, &meta, || {
        C::RemoveStep {
            step_id: a.steps[0],
        }
    })
    .await
    .unwrap();
    let v2 = publish().await.unwrap();
    assert!(
        matches!(&v2.events[..], [WalkthroughEvent::WalkthroughPublished { version: 2, steps, .. }] if steps.len() == 1)
    );

    walkthroughs::change(&given.store, a.org, a.wt, a.owner, &meta, || C::Unpublish)
        .await
        .unwrap();
    let again = publish().await.unwrap();
    assert!(
        matches!(
            &again.events[..],
            [WalkthroughEvent::WalkthroughRepublished { version: 2 }]
        ),
        "unchanged: the same version again, not a copy"
    );
    let loaded = walkthroughs::load(&given.store, a.org, a.wt)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((loaded.version, loaded.published.len()), (2, 1));
}

#[tokio::test]
async fn only_managers_author_and_only_live_servers_of_the_org_take_assignments() {
    let given = Given::new().await;
    let a = published(&given, 1).await;
    let member = given.user("member@acme.dev").await;
    given
        .member(a.org, a.owner, "member@acme.dev", "member")
        .await;
    let outsider = given.user("outsider@globex.dev").await;
    let globex = given.org(outsider, "outsider@globex.dev", "globex").await;
    let foreign = given.server(globex, outsider, "foreign").await;
    let meta = as_user(a.owner);

    let by_member = walkthroughs::create(
        &given.store,
        a.org,
        Uuid::new_v4(),
        member,
        "Mine".into(),
        None,
        &as_user(member),
    )
    .await;
    assert!(matches!(
        by_member,
        Err(ExecuteError::Domain(WalkthroughError::NotAllowed))
    ));
    let by_outsider = walkthroughs::change(
        &given.store,
        a.org,
        a.wt,
        outsider,
        &as_user(outsider),
        || C::Archive,
    )
    .await;
    assert!(matches!(
        by_outsider,
        Err(ExecuteError::Domain(WalkthroughError::NotFound))
    ));
    let through_own_org = walkthroughs::change(
        &given.store,
        globex,
        a.wt,
        outsider,
        &as_user(outsider),
        || C::Archive,
    )
    .await;
    assert!(matches!(
        through_own_org,
        Err(ExecuteError::Domain(WalkthroughError::NotFound))
    ));
    assert!(walkthroughs::load(&given.store, globex, a.wt)
        .await
        .unwrap()
        .is_none());

    let assign = |server: Uuid| C::Assign {
        server_id: server,
        assignment: Assignment {
            display_order: 1,
            enabled: true,
        },
    };
    let to_foreign =
        walkthroughs::change_assignment(&given.store, a.org, a.wt, foreign, a.owner, &meta, || {
            assign(foreign)
        })
        .await;
    assert!(matches!(
        to_foreign,
        Err(walkthroughs::AssignError::ServerNotFound)
    ));
    let twice = walkthroughs::change_assignment(
        &given.store,
        a.org,
        a.wt,
        a.server,
        a.owner,
        &meta,
        || assign(a.server),
    )
    .await;
    assert!(matches!(
        twice,
        Err(walkthroughs::AssignError::Execute(ExecuteError::Domain(
            WalkthroughError::AlreadyAssigned
        )))
    ));

    let old = given.server(a.org, a.owner, "old").await;
    servers::archive(&given.store, a.org, old, a.owner, &meta)
        .await
        .unwrap();
    let to_archived =
        walkthroughs::change_assignment(&given.store, a.org, a.wt, old, a.owner, &meta, || {
            assign(old)
        })
        .await;
    assert!(matches!(
        to_archived,
        Err(walkthroughs::AssignError::ServerArchived)
    ));
    // What is on an archived server can still be taken off.
    servers::archive(&given.store, a.org, a.server, a.owner, &meta)
        .await
        .unwrap();
    walkthroughs::change_assignment(&given.store, a.org, a.wt, a.server, a.owner, &meta, || {
        C::Unassign {
            server_id: a.server,
        }
    })
    .await
    .unwrap();

    let draft = Uuid::new_v4();
    walkthroughs::create(
        &given.store,
        a.org,
        draft,
        a.owner,
        "Draft".into(),
        None,
        &meta,
    )
    .await
    .unwrap();
    let live = given.server(a.org, a.owner, "live").await;
    let unpublished =
        walkthroughs::change_assignment(&given.store, a.org, draft, live, a.owner, &meta, || {
            assign(live)
        })
        .await;
    assert!(matches!(
        unpublished,
        Err(walkthroughs::AssignError::Execute(ExecuteError::Domain(
            WalkthroughError::AssignUnpublished
        )))
    ));
}
