//! Blobs and their owners (`store::blobs`, `store::tenancy`, `store::pg::blobs`): a blob is
//! usable as an input by those who uploaded it (or an admin), and is read back whole.

use super::spec;
use datarun::store::{sha256_hex, Scope, Store, StoreError};

pub async fn blobs_and_their_owners(s: Store) {
    let (sha, size) = s.put_blob(b"hello blob".to_vec()).await.unwrap();
    assert_eq!(
        (sha.as_str(), size),
        (sha256_hex(b"hello blob").as_str(), 10)
    );
    s.own_blobs("ann".into(), vec![sha.clone()]).await.unwrap();
    let ann = Scope::Owner("ann".into());
    let bob = Scope::Owner("bob".into());
    assert!(s.may_use_blob(&ann, sha.clone()).await.unwrap());
    assert!(!s.may_use_blob(&bob, sha.clone()).await.unwrap());
    assert!(s.may_use_blob(&Scope::All, sha.clone()).await.unwrap());
    assert!(!s
        .may_use_blob(&Scope::All, sha256_hex(b"none"))
        .await
        .unwrap());
    let input = format!(r#"{{"command":["true"],"inputs":[{{"name":"a","sha256":"{sha}"}}]}}"#);
    match s
        .submit("bob".into(), false, vec![(spec(&input), None)])
        .await
    {
        Err(StoreError::Invalid(m)) => assert!(m.contains("not uploaded"), "{m}"),
        other => panic!("another owner's blob: {other:?}"),
    }
    let ids = s
        .submit("ann".into(), false, vec![(spec(&input), None)])
        .await
        .unwrap();
    assert_eq!(s.fold(ids[0]).await.unwrap().spec.inputs[0].sha256, sha);
    assert_eq!(s.get_blob(sha).await.unwrap(), b"hello blob");
    assert!(matches!(
        s.get_blob(sha256_hex(b"none")).await,
        Err(StoreError::NotFound(_))
    ));
}
