//! A second handle on a held store reads through its holder (in this process, as sled's lock
//! refuses a second open here too) and takes the store over when the holder closes it.

use std::time::Duration;

use super::super::testutil::{dump, feed, manifest_of};
use super::super::{Aggregator, Store};

/// A feature's list and how many of its examples a handle reads.
type Answer = (u32, Vec<(f32, u32)>, usize);

/// Every feature's list and examples as a handle answers them.
fn answers(store: &Store) -> Vec<Answer> {
    (0..store.manifest().num_latents as u32)
        .map(|f| {
            let examples = store.top_examples(f).unwrap().len();
            (f, store.top_list(f).unwrap(), examples)
        })
        .collect()
}

#[test]
fn a_reader_beside_the_writer_sees_each_commit_and_takes_over_at_the_end() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let m = manifest_of(40, 3);
    let writer = Store::create(&dir, &m).unwrap();
    let mut agg = Aggregator::from_manifest(&m).unwrap();
    let idx: Vec<u32> = (0..60).collect();
    feed(&mut agg, &writer, 3, &idx[..20], 5);

    let reader = Store::open(&dir).unwrap();
    assert!(
        reader.is_remote(),
        "a second open in this process reads through the holder"
    );
    assert_eq!(reader.manifest(), writer.manifest());
    assert_eq!(reader.progress().unwrap(), writer.progress().unwrap());
    assert_eq!(answers(&reader), answers(&writer));
    assert_eq!(reader.images().count(), 20);

    // The writer goes on; the reader sees the new commit once its replay is old enough.
    feed(&mut agg, &writer, 3, &idx[20..], 8);
    agg.finish(&writer).unwrap();
    assert_eq!(reader.progress().unwrap(), writer.progress().unwrap());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(answers(&reader), answers(&writer));
    assert_eq!(reader.images().count(), 60);

    // User trees are written through the holder and seen by both.
    reader.put_label(7, Some("seven")).unwrap();
    let list = reader.add_to_list("mine", 7, Some("note")).unwrap();
    assert_eq!(writer.label(7).unwrap().as_deref(), Some("seven"));
    assert_eq!(writer.list("mine").unwrap(), Some(list));
    writer.put_label(8, Some("eight")).unwrap();
    assert_eq!(reader.labels().unwrap().len(), 2);
    // The cache's own records are not.
    assert!(reader.apply(sled::Batch::default(), 0).is_err());

    // Closing the writer hands the store to the reader.
    let expected = dump(&writer);
    drop((agg, writer));
    let mut tries = 0;
    let progress = loop {
        // sled's flusher lets the lock go a moment after the last handle is dropped.
        match reader.progress() {
            Ok(p) => break p,
            Err(_) if tries < 20 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("the reader did not take the store over: {e:#}"),
        }
    };
    assert!(progress.complete);
    assert!(!reader.is_remote());
    assert!(dump(&reader) == expected);
}
