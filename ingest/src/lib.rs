//! The producer side of the pipeline: puts commands on the commands topic (batching, idempotent
//! producer) and resolves each from the replies topic; bulk stock loads. Not built yet (issue 6).
