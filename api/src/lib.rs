//! The HTTP front door (actix-web): auth, validation, backpressure, waiting for and polling
//! replies, availability reads from a read model. Not built yet (issue 6).
