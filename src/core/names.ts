import { Code, RealtimeError } from "../protocol/errors.js";
import { MAX_CHANNEL_NAME_LENGTH, MAX_EVENT_NAME_LENGTH } from "./limits.js";
import { SYSTEM_EVENT_PREFIX } from "../protocol/system-events.js";

/** Characters a channel name may use. */
const CHANNEL_RE = /^[A-Za-z0-9_\-.:@/=+]+$/;
/** Characters an event name may use. */
const EVENT_RE = /^[A-Za-z0-9_\-.:]+$/;

/** Throws INVALID_ARGUMENT unless name is a valid channel name. */
export function checkChannel(name: string, field = "channel"): void {
  if (name.length === 0) {
    throw new RealtimeError(
      Code.InvalidArgument,
      `${field} is required: a channel name of 1 to ${MAX_CHANNEL_NAME_LENGTH} characters`,
    );
  }
  if (name.length > MAX_CHANNEL_NAME_LENGTH) {
    throw new RealtimeError(
      Code.InvalidArgument,
      `${field} is ${name.length} characters long; the limit is ${MAX_CHANNEL_NAME_LENGTH}`,
    );
  }
  if (!CHANNEL_RE.test(name)) {
    throw new RealtimeError(
      Code.InvalidArgument,
      `${field} ${JSON.stringify(name)} has a character outside A-Z a-z 0-9 _ - . : @ / = +`,
    );
  }
}

/** Throws INVALID_ARGUMENT unless name is a valid, non-reserved event name. */
export function checkEvent(name: string, field = "event"): void {
  if (name.length === 0) {
    throw new RealtimeError(
      Code.InvalidArgument,
      `${field} is required: an event name of 1 to ${MAX_EVENT_NAME_LENGTH} characters`,
    );
  }
  if (name.length > MAX_EVENT_NAME_LENGTH) {
    throw new RealtimeError(
      Code.InvalidArgument,
      `${field} is ${name.length} characters long; the limit is ${MAX_EVENT_NAME_LENGTH}`,
    );
  }
  if (!EVENT_RE.test(name)) {
    throw new RealtimeError(
      Code.InvalidArgument,
      `${field} ${JSON.stringify(name)} has a character outside A-Z a-z 0-9 _ - . :`,
    );
  }
  if (name.startsWith(SYSTEM_EVENT_PREFIX)) {
    throw new RealtimeError(
      Code.InvalidArgument,
      `${field} ${JSON.stringify(name)} is reserved: names starting with "${SYSTEM_EVENT_PREFIX}" are system events`,
    );
  }
}
