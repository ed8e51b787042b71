package tidepool.compat;

import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/** Produces the workload, one idempotent producer per compression codec, and records every ack. */
final class Producing {
    private final String bootstrap;
    private final String topic;

    Producing(String bootstrap, String topic) {
        this.bootstrap = bootstrap;
        this.topic = topic;
    }

    /**
     * Sends all planned records of one codec and returns those the broker acknowledged; the checks
     * of the acknowledgements go to {@code checks}.
     */
    List<SentRecord> produce(String codec, List<PlannedRecord> planned, Checks checks) throws InterruptedException {
        List<Future<RecordMetadata>> acks = new ArrayList<>(planned.size());
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(config(codec))) {
            for (PlannedRecord record : planned) {
                acks.add(producer.send(toProducerRecord(record)));
            }
            producer.flush();
            return collectAcks(planned, acks, checks);
        }
    }

    private Properties config(String codec) {
        Properties config = new Properties();
        config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        config.put(ProducerConfig.CLIENT_ID_CONFIG, "tidepool-java-compat-" + codec);
        config.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
        config.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
        config.put(ProducerConfig.ACKS_CONFIG, "all");
        // A little linger so batches carry many records: compression and batch parsing get real work.
        config.put(ProducerConfig.LINGER_MS_CONFIG, 5);
        // Fail within the run's time budget instead of retrying for the default two minutes.
        config.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 15_000);
        config.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 60_000);
        config.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, 30_000);
        config.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class);
        config.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class);
        return config;
    }

    private ProducerRecord<byte[], byte[]> toProducerRecord(PlannedRecord record) {
        return new ProducerRecord<>(topic, record.partition(), record.timestamp(), record.key(),
                record.value(), record.headers());
    }

    private static List<SentRecord> collectAcks(List<PlannedRecord> planned, List<Future<RecordMetadata>> acks,
                                                Checks checks) throws InterruptedException {
        List<SentRecord> sent = new ArrayList<>(planned.size());
        for (int i = 0; i < planned.size(); i++) {
            PlannedRecord record = planned.get(i);
            try {
                RecordMetadata metadata = acks.get(i).get(5, TimeUnit.SECONDS);
                checkMetadata(record, metadata, checks);
                sent.add(new SentRecord(record, metadata.partition(), metadata.offset(), metadata.timestamp()));
            } catch (ExecutionException e) {
                checks.fail("produce failed", record.id() + ": " + e.getCause());
            } catch (TimeoutException e) {
                checks.fail("produce not acknowledged after flush", record.id());
            }
        }
        return sent;
    }

    private static void checkMetadata(PlannedRecord record, RecordMetadata metadata, Checks checks) {
        String where = record.id() + " acked at " + metadata.partition() + "/" + metadata.offset();
        checks.expect(metadata.hasOffset() && metadata.offset() >= 0, "ack without an offset", where);
        if (record.partition() != null) {
            checks.expectEqual("ack on another partition than requested", record.partition(),
                    metadata.partition(), where);
        }
        // With CreateTime the broker answers log_append_time -1 and the client reports the record's own.
        checks.expectEqual("ack timestamp differs from CreateTime sent", record.timestamp(),
                metadata.timestamp(), where);
    }
}
