package tidepool.compat;

/** A produced record with what the broker acknowledged for it (from RecordMetadata). */
record SentRecord(PlannedRecord planned, int partition, long offset, long timestamp) {

    String where() {
        return planned.id() + " at " + partition + "/" + offset;
    }
}
