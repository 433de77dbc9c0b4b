"""Names and numbers of the spacesim wire protocol (protocol version 2; the
package also decodes protocol 1 snapshots, as hello's "protocol" says).

These mirror proto/spacesim_proto.def and src/sim/kinds.h; tests/python checks
that they still match those files, so a change there fails `make check`.
"""

PROTOCOL_VERSION = 2   # SP_PROTO_VERSION of proto/spacesim_proto.def (tests/python checks it)

# Request/response/notification type tags of MessagePack-RPC.
REQUEST, RESPONSE, NOTIFY = 0, 1, 2

METHODS = ("ping", "hello", "spawn", "move", "fire", "mine", "subscribe",
           "inspect", "alert", "stats", "resync", "clients", "kick", "limits", "remove")

# code -> name, from SP_PROTO_ERROR_MAP.
ERRORS = {
    1: "PARSE_ERROR",
    2: "INVALID_REQUEST",
    3: "METHOD_NOT_FOUND",
    4: "INVALID_PARAMS",
    5: "NOT_AUTHENTICATED",
    6: "FORBIDDEN",
    7: "NOT_FOUND",
    8: "OUT_OF_RANGE",
    9: "COOLDOWN",
    10: "RATE_LIMITED",
    11: "LIMIT",
    12: "INTERNAL",
    13: "TOO_LARGE",
}
ERROR_CODES = {name: code for code, name in ERRORS.items()}

EVENT_TYPES = ("WeaponFired", "ResourceMined", "SystemAlert", "ShipDestroyed")

# Entity kinds as snapshots carry them, and their names as `inspect` returns them.
SHIP, ASTEROID, PROJECTILE = 1, 2, 3
KIND_NAMES = {SHIP: "ship", ASTEROID: "asteroid", PROJECTILE: "projectile"}

RESOURCES = ("iron", "nickel", "ice", "platinum")

# Quantization: wire integer = round(value * steps); decoders divide.
POS_STEPS = 16      # 1/16 world unit
VEL_STEPS = 64      # 1/64 world unit per second
HP_STEPS = 16       # 1/16 hp
RADIUS_STEPS = 16   # 1/16 world unit

# Snapshot "changed" entry mask bits (SP_SNAP_FIELD_MAP).
F_POS, F_VEL, F_HP, F_OWNER, F_RADIUS = 1, 2, 4, 8, 16
ENTERED_INTS = 11

LIMITS = {
    "MAX_MESSAGE_BYTES": 65536,
    "MAX_DEPTH": 16,
    "MAX_SERVER_MESSAGE_BYTES": 16777216,
    "RATE_PER_SEC": 200,
    "RATE_BURST": 400,
    "MAX_SHIPS": 16,
    "MAX_NAME_BYTES": 64,
    "MAX_ALERT_BYTES": 512,
    "MAX_RADIUS": 20000,
    "DEFAULT_RADIUS": 2000,
    "IDLE_PING_SEC": 30,
    "IDLE_TIMEOUT_SEC": 120,
}

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7777
