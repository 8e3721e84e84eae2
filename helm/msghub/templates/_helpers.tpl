{{/* Names ------------------------------------------------------------- */}}

{{- define "msghub.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: the release name when it already contains the chart name, so
`helm install msghub ./helm/msghub` gives a Service called msghub (and
`minikube service msghub` finds it). Kept to 40 characters so that
"<fullname>-rabbitmq-headless" and StatefulSet names stay within limits.
*/}}
{{- define "msghub.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "msghub.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "msghub.redis.fullname" -}}{{ include "msghub.fullname" . }}-redis{{- end }}
{{- define "msghub.rabbitmq.fullname" -}}{{ include "msghub.fullname" . }}-rabbitmq{{- end }}

{{/* Labels: call with (dict "ctx" $ "component" "hub") ------------------- */}}

{{- define "msghub.selectorLabels" -}}
app.kubernetes.io/name: {{ include "msghub.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "msghub.labels" -}}
helm.sh/chart: {{ include "msghub.chart" .ctx }}
{{ include "msghub.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: msghub
{{- end }}

{{/* Images -------------------------------------------------------------- */}}

{{- define "msghub.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "msghub.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "msghub.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Secrets -------------------------------------------------------------- */}}

{{- define "msghub.authSecretName" -}}
{{- default (include "msghub.fullname" .) .Values.auth.existingSecret }}
{{- end }}

{{- define "msghub.rabbitmqSecretName" -}}
{{- default (include "msghub.rabbitmq.fullname" .) .Values.rabbitmq.auth.existingSecret }}
{{- end }}

{{/* Secret of the external URLs given inline in values. */}}
{{- define "msghub.externalSecretName" -}}{{ include "msghub.fullname" . }}-external{{- end }}

{{/*
Value of one key of a Secret this chart generates: the value given in
values, else what the Secret already in the cluster holds (so upgrades keep
it), else a new random string. Call with
(dict "ctx" $ "secret" NAME "key" KEY "value" GIVEN "length" N).
*/}}
{{- define "msghub.secretValue" -}}
{{- $existing := lookup "v1" "Secret" .ctx.Release.Namespace .secret }}
{{- $data := dict }}
{{- if $existing }}{{ $data = (get $existing "data") | default dict }}{{ end }}
{{- $old := get $data .key | default "" | b64dec }}
{{- .value | default $old | default (randAlphaNum (int .length)) }}
{{- end }}

{{/* Backplane ------------------------------------------------------------ */}}

{{/* Fails the render on values that cannot work together. */}}
{{- define "msghub.validate" -}}
{{- if and (not .Values.redis.enabled) (not .Values.redis.external.url) (not .Values.redis.external.existingSecret) }}
{{- fail "redis.enabled is false: set redis.external.url or redis.external.existingSecret (msghub needs Redis and RabbitMQ to run more than one replica)" }}
{{- end }}
{{- if and (not .Values.rabbitmq.enabled) (not .Values.rabbitmq.external.url) (not .Values.rabbitmq.external.existingSecret) }}
{{- fail "rabbitmq.enabled is false: set rabbitmq.external.url or rabbitmq.external.existingSecret" }}
{{- end }}
{{- if and .Values.redis.external.url (not (hasPrefix "redis://" .Values.redis.external.url)) }}
{{- fail "redis.external.url must start with redis://" }}
{{- end }}
{{- if and .Values.rabbitmq.external.url (not (hasPrefix "amqp://" .Values.rabbitmq.external.url)) }}
{{- fail "rabbitmq.external.url must start with amqp:// (amqps is not supported by msghub)" }}
{{- end }}
{{- $minGrace := add .Values.hub.preStopSleep .Values.hub.shutdownTimeout 1 }}
{{- if and (not (kindIs "invalid" .Values.terminationGracePeriodSeconds)) (lt (int .Values.terminationGracePeriodSeconds) (int $minGrace)) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed hub.preStopSleep + hub.shutdownTimeout (%v), or the drain is cut short" .Values.terminationGracePeriodSeconds (sub $minGrace 1)) }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- end }}

{{- define "msghub.terminationGracePeriodSeconds" -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add .Values.hub.preStopSleep .Values.hub.shutdownTimeout 10 }}
{{- else }}
{{- .Values.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/* The env entries that give msghub MSGHUB_REDIS_URL and MSGHUB_AMQP_URL. */}}
{{- define "msghub.backplaneEnv" -}}
{{- if .Values.redis.enabled }}
- name: MSGHUB_REDIS_URL
  value: {{ printf "redis://%s:6379/0" (include "msghub.redis.fullname" .) | quote }}
{{- else }}
- name: MSGHUB_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ default (include "msghub.externalSecretName" .) .Values.redis.external.existingSecret }}
      key: {{ ternary .Values.redis.external.existingSecretKey "redis-url" (not (empty .Values.redis.external.existingSecret)) }}
{{- end }}
{{- if .Values.rabbitmq.enabled }}
- name: RABBITMQ_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ include "msghub.rabbitmqSecretName" . }}
      key: {{ .Values.rabbitmq.auth.usernameKey }}
- name: RABBITMQ_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "msghub.rabbitmqSecretName" . }}
      key: {{ .Values.rabbitmq.auth.passwordKey }}
- name: MSGHUB_AMQP_URL
  value: {{ printf "amqp://$(RABBITMQ_USERNAME):$(RABBITMQ_PASSWORD)@%s:5672/" (include "msghub.rabbitmq.fullname" .) | quote }}
{{- else }}
- name: MSGHUB_AMQP_URL
  valueFrom:
    secretKeyRef:
      name: {{ default (include "msghub.externalSecretName" .) .Values.rabbitmq.external.existingSecret }}
      key: {{ ternary .Values.rabbitmq.external.existingSecretKey "amqp-url" (not (empty .Values.rabbitmq.external.existingSecret)) }}
{{- end }}
{{- end }}
