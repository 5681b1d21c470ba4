{{/* Names ---------------------------------------------------------------- */}}

{{- define "playground.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-wide prefix, at most 50 characters so "<prefix>-tcp-headless" fits. */}}
{{- define "playground.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of a component's objects: include "playground.componentName" (list $ "tcp") */}}
{{- define "playground.componentName" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s" (include "playground.fullname" $root) (index . 1) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "playground.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels ----------------------------------------------------------------- */}}

{{- define "playground.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "playground.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "playground.labels" -}}
{{- $root := index . 0 -}}
helm.sh/chart: {{ include "playground.chart" $root }}
{{ include "playground.selectorLabels" . }}
app.kubernetes.io/part-of: playground
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
{{- with $root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels of every pod of this release (default-deny NetworkPolicy). */}}
{{- define "playground.releasePodSelector" -}}
app.kubernetes.io/name: {{ include "playground.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Images ----------------------------------------------------------------- */}}

{{- define "playground.image" -}}
{{- $img := .Values.image -}}
{{- $repo := include "playground.registry" (list . $img.repository) -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $repo $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .Chart.AppVersion $img.tag | toString) -}}
{{- end -}}
{{- end -}}

{{/* A repository with global.imageRegistry in front, when set: (list $ repository) */}}
{{- define "playground.registry" -}}
{{- $root := index . 0 -}}
{{- $repo := index . 1 -}}
{{- with (($root.Values.global).imageRegistry) -}}
{{- printf "%s/%s" (trimSuffix "/" .) $repo -}}
{{- else -}}
{{- $repo -}}
{{- end -}}
{{- end -}}

{{/* initContainers of a pod spec, when any: (list $ values). */}}
{{- define "playground.initContainers" -}}
{{- $v := index . 1 -}}
{{- with $v.initContainers }}
initContainers:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* command, args (defaults given) and lifecycle of a container: (list $ values defaultArgs) */}}
{{- define "playground.commandArgs" -}}
{{- $v := index . 1 -}}
{{- with $v.command }}
command:
  {{- toYaml . | nindent 2 }}
{{- end }}
args:
  {{- toYaml (default (index . 2) $v.args) | nindent 2 }}
{{- with $v.lifecycle }}
lifecycle:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "playground.serviceAccountName" -}}
{{- $root := index . 0 -}}
{{- $c := index $root.Values (index . 1) -}}
{{- if $c.serviceAccount.create -}}
{{- default (include "playground.componentName" .) $c.serviceAccount.name -}}
{{- else -}}
{{- default "default" $c.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Backends --------------------------------------------------------------- */}}

{{/* Name a dependency gives its objects (Bitnami / ECK fullname rule). */}}
{{- define "playground.depFullname" -}}
{{- $root := index . 0 -}}
{{- $chart := index . 1 -}}
{{- if contains $chart $root.Release.Name -}}
{{- $root.Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" $root.Release.Name $chart | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "playground.memcachedService" -}}
{{- if .Values.backends.memcached.service -}}
{{- .Values.backends.memcached.service -}}
{{- else if .Values.memcached.enabled -}}
{{- printf "%s-memcached-headless" (include "playground.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "playground.kafkaBrokers" -}}
{{- if .Values.backends.kafka.brokers -}}
{{- .Values.backends.kafka.brokers -}}
{{- else if .Values.kafka.enabled -}}
{{- printf "%s:9092" (include "playground.depFullname" (list . "kafka")) -}}
{{- end -}}
{{- end -}}

{{- define "playground.kafkaSasl" -}}
{{- if hasPrefix "sasl_" .Values.backends.kafka.securityProtocol -}}true{{- end -}}
{{- end -}}

{{- define "playground.kafkaTls" -}}
{{- if has .Values.backends.kafka.securityProtocol (list "ssl" "sasl_ssl") -}}true{{- end -}}
{{- end -}}

{{/* Secret name and key of the Kafka SASL password: "name/key". */}}
{{- define "playground.kafkaPasswordRef" -}}
{{- if .Values.backends.kafka.existingSecret -}}
{{- printf "%s/%s" .Values.backends.kafka.existingSecret .Values.backends.kafka.existingSecretPasswordKey -}}
{{- else if .Values.kafka.enabled -}}
{{- printf "%s-user-passwords/client-passwords" (include "playground.depFullname" (list . "kafka")) -}}
{{- end -}}
{{- end -}}

{{- define "playground.esName" -}}
{{- $es := index .Values "eck-stack" "eck-elasticsearch" | default dict -}}
{{- $es.fullnameOverride | default (include "playground.depFullname" (list . "eck-elasticsearch")) -}}
{{- end -}}

{{- define "playground.esEndpoint" -}}
{{- if .Values.backends.elasticsearch.endpoint -}}
{{- .Values.backends.elasticsearch.endpoint -}}
{{- else if (index .Values "eck-stack").enabled -}}
{{- printf "https://%s-es-http:9200" (include "playground.esName" .) -}}
{{- end -}}
{{- end -}}

{{- define "playground.esPasswordRef" -}}
{{- if .Values.backends.elasticsearch.existingSecret -}}
{{- printf "%s/%s" .Values.backends.elasticsearch.existingSecret .Values.backends.elasticsearch.existingSecretPasswordKey -}}
{{- else if (index .Values "eck-stack").enabled -}}
{{- printf "%s-es-elastic-user/elastic" (include "playground.esName" .) -}}
{{- end -}}
{{- end -}}

{{- define "playground.esCaRef" -}}
{{- if .Values.backends.elasticsearch.caSecret -}}
{{- printf "%s/%s" .Values.backends.elasticsearch.caSecret .Values.backends.elasticsearch.caSecretKey -}}
{{- else if and (index .Values "eck-stack").enabled (not .Values.backends.elasticsearch.endpoint) -}}
{{- printf "%s-es-http-certs-public/ca.crt" (include "playground.esName" .) -}}
{{- end -}}
{{- end -}}

{{/* secretKeyRef from "name/key" */}}
{{- define "playground.secretKeyRef" -}}
{{- $parts := splitList "/" . -}}
valueFrom:
  secretKeyRef:
    name: {{ first $parts }}
    key: {{ last $parts }}
{{- end -}}

{{/* Checks that stop the render with a message -------------------------------- */}}

{{- define "playground.validate" -}}
{{- $grace := add .Values.config.sigtermTimeout .Values.config.reconnectGrace -}}
{{- with .Values.gateway -}}
{{- if and .enabled .drain.enabled (le (int .terminationGracePeriodSeconds) (int .drain.seconds)) -}}
{{- fail (printf "gateway.terminationGracePeriodSeconds (%v) must be longer than gateway.drain.seconds (%v)" .terminationGracePeriodSeconds .drain.seconds) -}}
{{- end -}}
{{- end -}}
{{- range $c := list "tcp" "udp" "logger" -}}
{{- $v := index $.Values $c -}}
{{- if and $v.enabled (le (int $v.terminationGracePeriodSeconds) (int $grace)) -}}
{{- fail (printf "%s.terminationGracePeriodSeconds (%v) must be longer than config.sigtermTimeout + config.reconnectGrace (%v)" $c $v.terminationGracePeriodSeconds $grace) -}}
{{- end -}}
{{- end -}}
{{- if and (include "playground.kafkaBrokers" .) (include "playground.kafkaSasl" .) (not (include "playground.kafkaPasswordRef" .)) -}}
{{- fail "backends.kafka.existingSecret is required: SASL is on and the Kafka sub-chart is disabled" -}}
{{- end -}}
{{- if and (include "playground.kafkaTls" .) (include "playground.kafkaBrokers" .) (not .Values.backends.kafka.caSecret) -}}
{{- fail "backends.kafka.caSecret is required with securityProtocol ssl or sasl_ssl" -}}
{{- end -}}
{{- if .Values.logger.enabled -}}
{{- if not (include "playground.kafkaBrokers" .) -}}
{{- fail "the logger needs Kafka: set backends.kafka.brokers or kafka.enabled" -}}
{{- end -}}
{{- if not (include "playground.esEndpoint" .) -}}
{{- fail "the logger needs Elasticsearch: set backends.elasticsearch.endpoint or eck-stack.enabled" -}}
{{- end -}}
{{- if not (include "playground.esPasswordRef" .) -}}
{{- fail "backends.elasticsearch.existingSecret is required (the password is never read from values)" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.metrics.serviceMonitor.enabled .Values.metrics.podMonitor.enabled -}}
{{- fail "enable metrics.serviceMonitor or metrics.podMonitor, not both (every target would be scraped twice)" -}}
{{- end -}}
{{- $pa := index .Values "prometheus-adapter" -}}
{{- if and $pa.enabled .Values.autoscaling.adapterRules.enabled -}}
{{- if ne (toString (dig "rules" "existing" "" $pa)) .Values.autoscaling.adapterRules.configMapName -}}
{{- fail (printf "prometheus-adapter.rules.existing must be autoscaling.adapterRules.configMapName (%s) so the adapter serves the HPA metrics" .Values.autoscaling.adapterRules.configMapName) -}}
{{- end -}}
{{- if and .Values.autoscaling.adapterRules.namespace (ne .Values.autoscaling.adapterRules.namespace .Release.Namespace) -}}
{{- fail "autoscaling.adapterRules.namespace must be the release namespace when the prometheus-adapter sub-chart is enabled" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.gateway.enabled (not (or .Values.tcp.enabled .Values.udp.enabled)) -}}
{{- fail "the gateway needs tcp or udp enabled" -}}
{{- end -}}
{{- end -}}

{{/* Environment --------------------------------------------------------------- */}}

{{- define "playground.env" -}}
{{- $root := index . 0 -}}
{{- $c := index . 1 -}}
{{- $v := index $root.Values $c -}}
{{- $cfg := $root.Values.config -}}
{{- $k := $root.Values.backends.kafka -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: ADMIN_PORT
  value: {{ $cfg.adminPort | quote }}
- name: LOG_LEVEL
  value: {{ $cfg.logLevel | quote }}
- name: LOG_FORMAT
  value: {{ $cfg.logFormat | quote }}
- name: SIGTERM_TIMEOUT
  value: {{ $cfg.sigtermTimeout | quote }}
{{- if ne $c "logger" }}
- name: PORT
  value: {{ $v.port | quote }}
- name: BUFF_SIZE
  value: {{ $cfg.buffSize | quote }}
- name: RECONNECT_GRACE
  value: {{ $cfg.reconnectGrace | quote }}
- name: IDLE_TIMEOUT
  value: {{ $cfg.idleTimeout | quote }}
{{- with include "playground.memcachedService" $root }}
- name: MEMCACHED_SERVICE
  value: {{ . | quote }}
{{- end }}
- name: MEMCACHED_PORT
  value: {{ $root.Values.backends.memcached.port | quote }}
{{- end }}
{{- if eq $c "tcp" }}
- name: MAX_CONNECTIONS
  value: {{ $v.maxConnections | quote }}
{{- end }}
{{- if eq $c "udp" }}
- name: WORKERS
  value: {{ $v.workers | quote }}
{{- end }}
{{- with include "playground.kafkaBrokers" $root }}
- name: KAFKA_BROKERS
  value: {{ . | quote }}
- name: KAFKA_SECURITY_PROTOCOL
  value: {{ $k.securityProtocol | quote }}
{{- if include "playground.kafkaSasl" $root }}
- name: KAFKA_SASL_MECHANISM
  value: {{ $k.saslMechanism | quote }}
- name: KAFKA_SASL_USER
  value: {{ $k.saslUser | quote }}
- name: KAFKA_SASL_PASSWORD
{{ include "playground.secretKeyRef" (include "playground.kafkaPasswordRef" $root) | indent 2 }}
{{- end }}
{{- if include "playground.kafkaTls" $root }}
- name: KAFKA_SSL_CA_FILE
  value: /etc/playground/kafka-ca/{{ $k.caSecretKey }}
{{- end }}
{{- end }}
- name: KAFKA_BCAST_TOPIC
  value: {{ $k.bcastTopic | quote }}
- name: KAFKA_LOGGING_TOPIC
  value: {{ $k.loggingTopic | quote }}
{{- if eq $c "logger" }}
{{- $es := $root.Values.backends.elasticsearch }}
- name: ELASTICSEARCH_ENDPOINT
  value: {{ include "playground.esEndpoint" $root | quote }}
- name: ELASTICSEARCH_LOGGING_INDEX
  value: {{ $es.loggingIndex | quote }}
- name: ELASTICSEARCH_USERNAME
  value: {{ $es.username | quote }}
- name: ELASTICSEARCH_PASSWORD
{{ include "playground.secretKeyRef" (include "playground.esPasswordRef" $root) | indent 2 }}
{{- with include "playground.esCaRef" $root }}
- name: ELASTICSEARCH_CA_FILE
  value: /etc/playground/es-ca/{{ last (splitList "/" .) }}
{{- end }}
- name: ELASTICSEARCH_INSECURE_SKIP_VERIFY
  value: {{ $es.insecureSkipVerify | quote }}
{{- if ne (toString $v.ignoreMessagesBefore) "" }}
- name: IGNORE_MESSAGES_BEFORE
  value: {{ $v.ignoreMessagesBefore | quote }}
{{- end }}
{{- end }}
{{- with $cfg.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- with $v.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Volumes: /tmp and the CA certificates. */}}
{{- define "playground.volumes" -}}
{{- $root := index . 0 -}}
{{- $c := index . 1 -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if and (include "playground.kafkaTls" $root) (include "playground.kafkaBrokers" $root) }}
- name: kafka-ca
  secret:
    secretName: {{ $root.Values.backends.kafka.caSecret }}
    items:
      - key: {{ $root.Values.backends.kafka.caSecretKey }}
        path: {{ $root.Values.backends.kafka.caSecretKey }}
{{- end }}
{{- if eq $c "logger" }}
{{- with include "playground.esCaRef" $root }}
- name: es-ca
  secret:
    secretName: {{ first (splitList "/" .) }}
    items:
      - key: {{ last (splitList "/" .) }}
        path: {{ last (splitList "/" .) }}
{{- end }}
{{- end }}
{{- with (index $root.Values $c).extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "playground.volumeMounts" -}}
{{- $root := index . 0 -}}
{{- $c := index . 1 -}}
- name: tmp
  mountPath: /tmp
{{- if and (include "playground.kafkaTls" $root) (include "playground.kafkaBrokers" $root) }}
- name: kafka-ca
  mountPath: /etc/playground/kafka-ca
  readOnly: true
{{- end }}
{{- if and (eq $c "logger") (include "playground.esCaRef" $root) }}
- name: es-ca
  mountPath: /etc/playground/es-ca
  readOnly: true
{{- end }}
{{- with (index $root.Values $c).extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Scrape annotations for a pod: (list $ port path) */}}
{{- define "playground.scrapeAnnotations" -}}
{{- $root := index . 0 -}}
{{- if $root.Values.metrics.scrapeAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ index . 1 | quote }}
prometheus.io/path: {{ index . 2 | quote }}
{{- end }}
{{- end -}}
