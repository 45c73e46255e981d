//! walkthrough_analytics: funnel and sankey rollups of progress.

use crate::given::*;
use crate::walkthrough_progress::walkthrough;
use chrono::Duration;
use domain::walkthrough_progress::LeftRun;
use projections::models::walkthrough_analytics::{
    self as analytics, bucket_middle_ms, bucket_of, StepTotals, Window,
};
use uuid::Uuid;

#[tokio::test]
async fn starts_completions_restarts_step_counts_medians_and_flows_add_up() {
    let mut given = Given::new().await;
    let run = walkthrough(&mut given).await;
    let (done, restarter) = (Uuid::new_v4(), Uuid::new_v4());
    let t0 = now();
    let t = |s| t0 + Duration::seconds(s);
    run.walk(
        &mut given,
        done,
        &[
            run.started(done, t0, None),
            run.completed_step(done, 0, 1_000, t(1)),
            run.completed_step(done, 1, 500, t(2)),
            run.completed(done, t(2)),
        ],
    )
    .await;
    given.project().await;
    run.walk(
        &mut given,
        restarter,
        &[
            run.started(restarter, t0, None),
            run.completed_step(restarter, 0, 3_000, t(3)),
            run.started(
                restarter,
                t(4),
                Some(LeftRun {
                    version: 1,
                    step_id: Some(run.steps[1]),
                }),
            ),
        ],
    )
    .await;
    given.project().await;
    let pool = given.pool();

    // Every event may fall on another UTC day than `t0` near midnight: read both.
    let window = Window {
        from: t0.date_naive(),
        to: t(4).date_naive(),
        server_id: Some(run.server),
        version: Some(1),
    };
    let funnel = analytics::funnel(pool, run.org, run.wt, &window)
        .await
        .unwrap();
    let totals = funnel.days.iter().fold((0, 0, 0), |acc, d| {
        (acc.0 + d.starts, acc.1 + d.restarts, acc.2 + d.completions)
    });
    assert_eq!(totals, (3, 1, 1), "starts, restarts, completions");
    let [s1, s2] = run.steps;
    assert_eq!(
        funnel.steps,
        [
            StepTotals {
                step_id: s1,
                step_index: 0,
                reached: 3,
                completed: 2,
                restarted: 0
            },
            StepTotals {
                step_id: s2,
                step_index: 1,
                reached: 2,
                completed: 1,
                restarted: 1
            },
        ]
    );
    assert_eq!(funnel.medians[&s1], bucket_middle_ms(bucket_of(1_000)));
    assert_eq!(funnel.medians[&s2], bucket_middle_ms(bucket_of(500)));

    let flows = analytics::flows(pool, run.org, run.wt, &window)
        .await
        .unwrap();
    let mut links: Vec<_> = flows
        .links
        .iter()
        .map(|l| (l.from_node.clone(), l.to_node.clone(), l.n))
        .collect();
    links.sort();
    let mut expected = vec![
        ("start".to_owned(), s1.to_string(), 3),
        (s1.to_string(), s2.to_string(), 2),
        (s2.to_string(), "completed".to_owned(), 1),
        (s2.to_string(), "restarted".to_owned(), 1),
    ];
    expected.sort();
    assert_eq!(links, expected);
    assert_eq!(analytics::completed_runs(pool, run.org).await.unwrap(), 1);

    let other_server = Window {
        server_id: Some(Uuid::new_v4()),
        ..window
    };
    let empty = analytics::funnel(pool, run.org, run.wt, &other_server)
        .await
        .unwrap();
    assert!(empty.days.is_empty() && empty.steps.is_empty());
}
