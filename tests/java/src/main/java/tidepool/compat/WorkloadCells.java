package tidepool.compat;

import java.util.ArrayList;
import java.util.List;

/**
 * Which cells of the matrix the checks of the produce/consume workload count against. A check on
 * one codec's records counts against that codec; a check on a whole partition (every codec's
 * records interleave there) against every codec; the idempotent producers' acknowledgements, and
 * any record in the log that no acknowledgement named (a duplicate write), against idempotence.
 */
final class WorkloadCells {
    private final Checks root;

    WorkloadCells(Checks root) {
        this.root = root;
    }

    /** The workload's cells: one per codec, then idempotence. */
    static List<String> scenarios() {
        List<String> scenarios = new ArrayList<>();
        Workload.CODECS.forEach(codec -> scenarios.add(Matrix.codec(codec)));
        scenarios.add(Matrix.IDEMPOTENCE);
        return scenarios;
    }

    /** A check on one record of this codec as read back. */
    Checks codec(String codec) {
        return root.countingAgainst(Matrix.codec(codec));
    }

    /** A check on an acknowledgement of this codec's idempotent producer. */
    Checks acknowledged(String codec) {
        return root.countingAgainst(Matrix.codec(codec), Matrix.IDEMPOTENCE);
    }

    /** A check on the topic as a whole. */
    Checks everyCodec() {
        return root.countingAgainst(Workload.CODECS.stream().map(Matrix::codec).toArray(String[]::new));
    }

    /** A check on the topic as a whole that also shows duplicates or gaps the producers caused. */
    Checks everyCodecAndIdempotence() {
        return root.countingAgainst(scenarios().toArray(String[]::new));
    }

    /** The consumer's offset lookups (ListOffsets) count where the Admin client's do. */
    Checks offsetQueries() {
        return root.countingAgainst(Matrix.ADMIN);
    }
}
