package tidepool.compat;

/** A step that cannot go on; its cause is the client's own exception, printed for the report. */
final class CheckException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    CheckException(String message, Throwable cause) {
        super(message, cause);
    }
}
