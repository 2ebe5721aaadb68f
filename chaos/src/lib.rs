//! Workload generator, fault injector and auditor of invariants I1–I7 for operators who want to
//! prove them on their own deployment. Not built yet.
