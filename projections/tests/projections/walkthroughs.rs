//! walkthroughs: drafts, published versions, and what each server offers.

use crate::given::*;
use domain::values::OrgId;
use domain::walkthrough::{Step, StepContent, Walkthrough, WalkthroughEvent as E};
use projections::models::walkthroughs;
use uuid::Uuid;

pub fn content(title: &str) -> StepContent {
    StepContent {
        title: title.to_owned(),
        content: format!("{title}, in detail"),
        agent_instructions: None,
        operations: Vec::new(),
    }
}

pub fn step(id: Uuid, title: &str) -> Step {
    Step {
        id,
        content: content(title),
    }
}

struct Authored {
    org: OrgId,
    owner: Uuid,
    server: Uuid,
    wt: Uuid,
    steps: [Uuid; 2],
}

/// A walkthrough with two draft steps, the second added first and moved after.
async fn authored(given: &mut Given) -> Authored {
    let owner = given.user("owner@acme.dev").await;
    let org = given.org(owner, "owner@acme.dev", "acme").await;
    let server = given.server(org, owner, "guide").await;
    let wt = Uuid::new_v4();
    let steps = [Uuid::new_v4(), Uuid::new_v4()];
    given
        .append::<Walkthrough>(
            wt,
            &by(owner, org.0),
            &[
                E::WalkthroughCreated {
                    org_id: org.0,
                    title: "Quickstart".into(),
                    description: Some("Get going".into()),
                },
                E::StepAdded {
                    step_id: steps[1],
                    after_step_id: None,
                    step: content("Run it"),
                },
                E::StepAdded {
                    step_id: steps[0],
                    after_step_id: None,
                    step: content("Install"),
                },
            ],
        )
        .await;
    Authored {
        org,
        owner,
        server,
        wt,
        steps,
    }
}

#[tokio::test]
async fn a_draft_keeps_its_steps_in_order_and_is_not_offered() {
    let mut given = Given::new().await;
    let a = authored(&mut given).await;
    given.project().await;
    let pool = given.pool();
    let row = walkthroughs::get(pool, a.org, a.wt).await.unwrap().unwrap();
    assert_eq!(
        (
            row.title.as_str(),
            row.description.as_deref(),
            row.status.as_str()
        ),
        ("Quickstart", Some("Get going"), "draft")
    );
    let ids: Vec<_> = row.steps.0.iter().map(|s| s.id).collect();
    assert_eq!(ids, a.steps, "the step added first-of-all leads");
    assert_eq!(row.published_version, None);

    given
        .append::<Walkthrough>(
            a.wt,
            &by(a.owner, a.org.0),
            &[
                E::StepMoved {
                    step_id: a.steps[0],
                    after_step_id: Some(a.steps[1]),
                },
                E::StepEdited {
                    step_id: a.steps[1],
                    step: content("Run it now"),
                },
                E::WalkthroughDetailsChanged {
                    title: "Quick start".into(),
                    description: None,
                },
            ],
        )
        .await;
    given.project().await;
    let pool = given.pool();
    let row = walkthroughs::get(pool, a.org, a.wt).await.unwrap().unwrap();
    let titles: Vec<_> = row
        .steps
        .0
        .iter()
        .map(|s| s.content.title.as_str())
        .collect();
    assert_eq!(titles, ["Run it now", "Install"]);
    assert_eq!(
        (row.title.as_str(), row.description.as_deref()),
        ("Quick start", None)
    );
    assert!(walkthroughs::offered(pool, a.org, a.server)
        .await
        .unwrap()
        .is_empty());
    assert!(walkthroughs::versions(pool, a.org, a.wt)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn published_versions_are_offered_where_assigned_and_enabled() {
    let mut given = Given::new().await;
    let a = authored(&mut given).await;
    let v1 = vec![step(a.steps[0], "Install"), step(a.steps[1], "Run it")];
    given
        .append::<Walkthrough>(
            a.wt,
            &by(a.owner, a.org.0),
            &[
                E::WalkthroughPublished {
                    version: 1,
                    title: "Quickstart".into(),
                    description: None,
                    steps: v1.clone(),
                },
                E::WalkthroughAssigned {
                    server_id: a.server,
                    display_order: 3,
                    enabled: true,
                },
            ],
        )
        .await;
    given.project().await;
    let pool = given.pool();
    let row = walkthroughs::get(pool, a.org, a.wt).await.unwrap().unwrap();
    assert_eq!(
        (row.status.as_str(), row.published_version),
        ("published", Some(1))
    );
    let offered = walkthroughs::offered(pool, a.org, a.server).await.unwrap();
    assert_eq!(offered.len(), 1);
    assert_eq!((offered[0].walkthrough_id, offered[0].version), (a.wt, 1));
    assert_eq!(offered[0].steps.0, v1);
    let version = walkthroughs::version(pool, a.org, a.wt, 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(version.published_by, Some(a.owner));
    let on_server = walkthroughs::assignments_of_server(pool, a.org, a.server)
        .await
        .unwrap();
    assert_eq!(
        (on_server[0].display_order, on_server[0].enabled),
        (3, true)
    );

    // A second version; the first stays readable.
    given
        .append::<Walkthrough>(
            a.wt,
            &by(a.owner, a.org.0),
            &[E::WalkthroughPublished {
                version: 2,
                title: "Quickstart".into(),
                description: None,
                steps: vec![step(a.steps[1], "Run it")],
            }],
        )
        .await;
    given.project().await;
    let pool = given.pool();
    let versions: Vec<_> = walkthroughs::versions(pool, a.org, a.wt)
        .await
        .unwrap()
        .into_iter()
        .map(|v| (v.version, v.steps.0.len()))
        .collect();
    assert_eq!(versions, [(2, 1), (1, 2)], "newest first");
    assert_eq!(
        walkthroughs::offered(pool, a.org, a.server).await.unwrap()[0].version,
        2
    );
}

#[tokio::test]
async fn unpublishing_disabling_unassigning_and_archiving_take_it_off_servers() {
    let mut given = Given::new().await;
    let a = authored(&mut given).await;
    let meta = by(a.owner, a.org.0);
    let steps = vec![step(a.steps[0], "Install")];
    given
        .append::<Walkthrough>(
            a.wt,
            &meta,
            &[
                E::WalkthroughPublished {
                    version: 1,
                    title: "Quickstart".into(),
                    description: None,
                    steps,
                },
                E::WalkthroughAssigned {
                    server_id: a.server,
                    display_order: 0,
                    enabled: true,
                },
                E::WalkthroughUnpublished { version: 1 },
            ],
        )
        .await;
    given.project().await;
    let row = walkthroughs::get(given.pool(), a.org, a.wt)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (row.status.as_str(), row.published_version),
        ("unpublished", Some(1))
    );
    assert!(walkthroughs::offered(given.pool(), a.org, a.server)
        .await
        .unwrap()
        .is_empty());

    given
        .append::<Walkthrough>(a.wt, &meta, &[E::WalkthroughRepublished { version: 1 }])
        .await;
    given.project().await;
    assert_eq!(
        walkthroughs::offered(given.pool(), a.org, a.server)
            .await
            .unwrap()
            .len(),
        1
    );

    given
        .append::<Walkthrough>(
            a.wt,
            &meta,
            &[E::WalkthroughAssignmentChanged {
                server_id: a.server,
                display_order: 1,
                enabled: false,
            }],
        )
        .await;
    given.project().await;
    assert!(walkthroughs::offered(given.pool(), a.org, a.server)
        .await
        .unwrap()
        .is_empty());
    let assigned = walkthroughs::assignments_of_walkthrough(given.pool(), a.org, a.wt)
        .await
        .unwrap();
    assert_eq!((assigned[0].display_order, assigned[0].enabled), (1, false));

    given
        .append::<Walkthrough>(
            a.wt,
            &meta,
            &[
                E::WalkthroughUnassigned {
                    server_id: a.server,
                },
                E::WalkthroughArchived,
            ],
        )
        .await;
    given.project().await;
    let pool = given.pool();
    assert!(walkthroughs::assignments_of_walkthrough(pool, a.org, a.wt)
        .await
        .unwrap()
        .is_empty());
    assert!(
        walkthroughs::list(pool, a.org, None, None, 10)
            .await
            .unwrap()
            .is_empty(),
        "archived ones are listed only when asked"
    );
    let archived = walkthroughs::list(pool, a.org, Some("archived"), None, 10)
        .await
        .unwrap();
    assert_eq!(archived[0].id, a.wt);
}
