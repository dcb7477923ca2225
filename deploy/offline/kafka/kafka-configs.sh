#!/bin/bash
# kafka-configs.sh of the Kafka distribution: kafka.admin.ConfigCommand.
exec java -Xmx128m -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties \
  -cp "/opt/kafka/libs/*" kafka.admin.ConfigCommand "$@"
