# Shared by start.sh (one broker) and cluster.sh (a KRaft cluster): finding
# java, resolving the broker classpath from Maven Central, the log4j2 file,
# and recognising our broker processes. Source it; it defines functions only.

# kafka_java: sets java to the java binary (JAVA_HOME first).
kafka_java() {
	if [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]]; then
		java=$JAVA_HOME/bin/java
	else
		java=$(command -v java) || die "java not found (Java 17+ is required)"
	fi
}

# kafka_classpath CACHE POM: resolves the broker's runtime jars into
# CACHE/lib (again only when POM changed) and sets cp.
kafka_classpath() {
	local cache=$1 pom=$2 lib=$1/lib want have
	want=$(sha256sum "$pom" | cut -d' ' -f1)
	have=$(cat "$cache/lib.sha256" 2>/dev/null || true)
	if [[ ! -d $lib || $want != "$have" ]]; then
		log "resolving the broker classpath from Maven Central into $lib"
		rm -rf "$lib" "$lib.tmp" "$cache/lib.sha256"
		# (mvn -q still prints ANSI resets; strip them.)
		if ! mvn -B -q -f "$pom" dependency:copy-dependencies \
			-DoutputDirectory="$lib.tmp" -DincludeScope=runtime 2>&1 |
			sed -e 's/\x1b\[[0-9;]*m//g' -e '/^[[:space:]]*$/d' >&2; then
			rm -rf "$lib.tmp"
			die "mvn dependency:copy-dependencies failed"
		fi
		mv "$lib.tmp" "$lib"
		echo "$want" >"$cache/lib.sha256"
	fi
	cp="$lib/*"
}

# kafka_log4j FILE LOGDIR: writes a log4j2 configuration: WARN and up to the
# console, INFO and up to LOGDIR/server.log.
kafka_log4j() {
	cat >"$1" <<XML
<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by scripts/kafka. -->
<Configuration status="WARN">
  <Appenders>
    <Console name="console" target="SYSTEM_OUT">
      <ThresholdFilter level="WARN" onMatch="ACCEPT" onMismatch="DENY"/>
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
    <RollingFile name="file" fileName="$2/server.log" filePattern="$2/server.log.%i">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <SizeBasedTriggeringPolicy size="50 MB"/>
      <DefaultRolloverStrategy max="3"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="org.apache.kafka.controller" level="INFO"/>
    <Logger name="state.change.logger" level="WARN"/>
    <Root level="INFO">
      <AppenderRef ref="console"/>
      <AppenderRef ref="file"/>
    </Root>
  </Loggers>
</Configuration>
XML
}

# kafka_alive PID: exists and is not a zombie.
kafka_alive() {
	local state
	[[ $1 =~ ^[0-9]+$ ]] || return 1
	state=$(awk '{ sub(/.*\) /, ""); print substr($0, 1, 1) }' "/proc/$1/stat" 2>/dev/null) || return 1
	[[ -n $state && $state != Z && $state != X ]]
}

# kafka_ours PID: alive and a Kafka broker JVM (guards against pid reuse).
kafka_ours() {
	kafka_alive "$1" && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q ' kafka\.Kafka '
}

# kafka_port_busy PORT: does something accept connections on 127.0.0.1:PORT?
kafka_port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
