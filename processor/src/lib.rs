//! The processor: a consumer-group member on the commands topic with one single-writer task per
//! assigned partition (load → apply → persist → produce in one Kafka transaction). Not built yet (issue 5).
