package tidepool.compat;

import java.util.EnumSet;
import java.util.List;
import java.util.Set;

/** Command line of the compatibility check. */
record Options(String bootstrap, Set<Gap> tolerated, int recordsPerCodec, int partitions, int timeoutSeconds, long seed) {

    static final String USAGE = """
            usage: run.sh BOOTSTRAP [--tolerate GAP[,GAP...]] [--records-per-codec N] [--partitions N]
                                    [--timeout-seconds N] [--seed N]

              --tolerate GAPS  report failures in these capabilities as TOLERATED instead of failing;
                               by default the broker is held to Apache Kafka's behaviour in everything.
                               GAPS:""" + " " + Gap.names() + "\n";

    static Options parse(String[] args) {
        if (args.length == 0 || args[0].startsWith("-")) {
            throw new IllegalArgumentException("missing BOOTSTRAP");
        }
        String bootstrap = args[0];
        Set<Gap> tolerated = EnumSet.noneOf(Gap.class);
        int recordsPerCodec = 2_500;
        int partitions = 6;
        int timeoutSeconds = 300;
        long seed = 20_240_601L;
        List<String> rest = List.of(args).subList(1, args.length);
        for (int i = 0; i < rest.size(); i++) {
            String flag = rest.get(i);
            if (i + 1 >= rest.size()) {
                throw new IllegalArgumentException("flag " + flag + " needs a value");
            }
            String value = rest.get(++i);
            switch (flag) {
                case "--tolerate" -> tolerated.addAll(Gap.parseList(value));
                case "--records-per-codec" -> recordsPerCodec = positive(flag, value);
                case "--partitions" -> partitions = positive(flag, value);
                case "--timeout-seconds" -> timeoutSeconds = positive(flag, value);
                case "--seed" -> seed = Long.parseLong(value);
                default -> throw new IllegalArgumentException("unknown flag " + flag);
            }
        }
        return new Options(bootstrap, tolerated, recordsPerCodec, partitions, timeoutSeconds, seed);
    }

    private static int positive(String flag, String value) {
        int parsed = Integer.parseInt(value);
        if (parsed <= 0) {
            throw new IllegalArgumentException(flag + " must be positive, got " + value);
        }
        return parsed;
    }
}
