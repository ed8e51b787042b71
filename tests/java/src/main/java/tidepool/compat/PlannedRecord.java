package tidepool.compat;

import java.util.List;
import org.apache.kafka.common.header.Header;

/**
 * One record the check will produce. {@code partition} is null when the default partitioner chooses
 * (from the key); it is set for records without a key so their placement is known in advance.
 */
record PlannedRecord(String codec, int index, Integer partition, byte[] key, byte[] value,
                     List<Header> headers, long timestamp) {

    String id() {
        return codec + "#" + index;
    }
}
