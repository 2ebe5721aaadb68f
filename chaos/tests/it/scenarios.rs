//! Every scenario shipped in `chaos/scenarios/` loads and validates (a typo in a field
//! name, or a fault scheduled after the load ends, is refused with the file's name), and
//! the same seed plans the same faults.

use std::path::PathBuf;

use chaos::scenario::Scenario;

fn shipped() -> Vec<PathBuf> {
    let dir = crate::manifest_dir().join("scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_shipped_scenario_loads_and_plans_the_same_faults_twice() {
    let files = shipped();
    assert!(files.len() >= 10, "{files:?}");
    for file in files {
        let scenario = Scenario::load(&file).unwrap_or_else(|e| panic!("{e}"));
        let stem = file.file_stem().unwrap().to_str().unwrap();
        assert_eq!(scenario.name, stem, "a scenario is named after its file");
        assert_eq!(scenario.plan(2, 2), scenario.plan(2, 2));
    }
}

#[test]
fn a_fault_after_the_end_of_the_load_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("late.toml");
    std::fs::write(
        &path,
        "name = \"late\"\ndescription = \"\"\nseed = 1\nduration_s = 30\n\
         [target]\nkind = \"local\"\n[workload]\nrate = 10\n\
         [[faults]]\nkind = \"kill-processor\"\nat_s = 5\nduration_s = 2\nevery_s = 15\ncount = 3\n",
    )
    .unwrap();
    let err = Scenario::load(&path).unwrap_err().to_string();
    assert!(err.contains("late.toml") && err.contains("starts after"), "{err}");
}
