//! Datasets and their splits (`store::datasets`, `store::pg::datasets`): a round trip, names
//! per owner, refusals that store nothing, tenancy, delete with the splits, and a purge that
//! keeps what a dataset or split refers to and takes it once nothing does.

use datarun::store::{DatasetId, NewDataset, NewSplit, Resource, Scope, Store, StoreError};
use serde_json::{json, Value};

fn iris_like() -> NewDataset {
    NewDataset {
        owner: "ann".into(),
        name: "iris".into(),
        target_column: "species".into(),
        workflow_elements: vec!["classifier".into()],
        score_types: vec!["accuracy".into()],
        table: b"x,species\n1,a\n2,b\n".to_vec(),
        rows: 2,
        stats: json!({"rows": 2}),
    }
}

fn split_of(dataset_id: DatasetId) -> NewSplit {
    NewSplit {
        dataset_id,
        held_out_test: 0.5,
        random_state: 42,
        stratify: true,
        train: vec![1],
        test: vec![0],
        stats: json!({"columns": []}),
    }
}

fn far_future() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + 60_000
}

pub async fn datasets_and_splits(s: Store) {
    let d = s.create_dataset(iris_like()).await.unwrap();
    assert_eq!((d.name.as_str(), d.rows, d.size), ("iris", 2, 18));
    assert_eq!(
        (d.owner.as_deref(), d.stats.clone()),
        (Some("ann"), json!({"rows": 2}))
    );
    assert_eq!(d.workflow_elements, ["classifier"]);
    assert_eq!(s.dataset_table(d.id).await.unwrap(), iris_like().table);
    assert_eq!(s.dataset(d.id).await.unwrap().score_types, ["accuracy"]);

    // Names are per owner: ann's second "iris" is refused and stores nothing; bob's is fine.
    let mut again = iris_like();
    again.table = b"other,table\n1,2\n".to_vec();
    let err = s.create_dataset(again).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(ref m) if m.contains("exists already") && m.contains(&format!("id {}", d.id))),
        "{err}"
    );
    let mut bobs = iris_like();
    bobs.owner = "bob".into();
    let b = s.create_dataset(bobs).await.unwrap();

    // Listings: without statistics, by scope, in pages.
    let (all, next) = s.list_datasets(&Scope::All, None, Some(1)).await.unwrap();
    assert_eq!((all.len(), all[0].id, next), (1, d.id, Some(d.id)));
    assert_eq!(all[0].stats, Value::Null);
    let (rest, next) = s.list_datasets(&Scope::All, next, Some(1)).await.unwrap();
    assert_eq!((rest.len(), rest[0].id, next), (1, b.id, None));
    let (anns, _) = s
        .list_datasets(&Scope::Owner("ann".into()), None, None)
        .await
        .unwrap();
    assert_eq!(anns.iter().map(|d| d.id).collect::<Vec<_>>(), [d.id]);
    // Another owner's dataset answers as a missing one.
    let bob = Scope::Owner("bob".into());
    assert!(s.visible(&bob, Resource::Dataset(b.id)).await.is_ok());
    let hidden = s.visible(&bob, Resource::Dataset(d.id)).await.unwrap_err();
    assert_eq!(hidden.to_string(), format!("no dataset with id {}", d.id));

    // A split: its row indices round trip; one of a missing dataset stores nothing.
    let split = s.create_split(split_of(d.id)).await.unwrap();
    let (rec, train, test) = s.split(split.id).await.unwrap();
    assert_eq!((train, test), (vec![1], vec![0]));
    assert_eq!(
        (
            rec.random_state,
            rec.train_rows,
            rec.test_rows,
            rec.stratify
        ),
        (42, 1, 1, true)
    );
    assert_eq!(
        (rec.kind.as_str(), rec.state.as_str()),
        ("held_out", "done")
    );
    assert_eq!(rec.stats, json!({"columns": []}));
    assert!(matches!(
        s.create_split(split_of(b.id + 100)).await,
        Err(StoreError::NotFound(_))
    ));
    let listed = s.list_splits(d.id).await.unwrap();
    assert_eq!((listed.len(), listed[0].stats.clone()), (1, Value::Null));
    assert!(s.visible(&bob, Resource::Split(split.id)).await.is_err());
    assert!(s
        .visible(&Scope::Owner("ann".into()), Resource::Split(split.id))
        .await
        .is_ok());

    // A purge keeps what the datasets and the split refer to.
    let kept = s.purge(far_future()).await.unwrap();
    assert_eq!(kept.blobs, 0, "{kept:?}");
    assert_eq!(s.dataset_table(d.id).await.unwrap(), iris_like().table);
    assert_eq!(s.split(split.id).await.unwrap().1, vec![1]);

    // Deleting a dataset deletes its splits; then nothing refers to its blobs.
    assert_eq!(s.delete_dataset(d.id).await.unwrap(), 1);
    assert!(matches!(
        s.dataset(d.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.split(split.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.delete_dataset(d.id).await,
        Err(StoreError::NotFound(_))
    ));
    let dropped = s.purge(far_future()).await.unwrap();
    // ann's table and the split's two index blobs (bob's table is another's, the same bytes).
    assert_eq!(dropped.blobs, 2, "{dropped:?}");
    assert_eq!(s.dataset_table(b.id).await.unwrap(), iris_like().table);
}
