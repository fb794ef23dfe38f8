{{/*
The three services, in the order they are rendered. Each one's Deployment, Service, PDB and HPA
are named after it (books, shop, chat: design §8), not after the release: the services reach
each other at http://<name>:8000 and Prometheus' `job` is that name.
*/}}
{{- define "bookshop.services" -}}
books shop chat
{{- end }}

{{/*
The neighbours each service calls (the `dependencies` of its config.yml; tests/deploy checks
that they agree): their base URLs point at the in-cluster Services.
*/}}
{{- define "bookshop.dependencies" -}}
{{- $graph := dict "books" (list) "shop" (list "books" "chat") "chat" (list "books") -}}
{{- join " " (get $graph .) -}}
{{- end }}

{{/* The port every service listens on and its Service exposes (design §8). */}}
{{- define "bookshop.port" -}}
8000
{{- end }}

{{/* Where the Secrets a pod reads are mounted. */}}
{{- define "bookshop.secretsDir" -}}
/var/run/secrets/bookshop
{{- end }}

{{- define "bookshop.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end }}

{{- define "bookshop.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end }}

{{/* Labels of every object but the selector ones. */}}
{{- define "bookshop.metaLabels" -}}
helm.sh/chart: {{ include "bookshop.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: bookshop
{{- end }}

{{/* Labels of the release's own objects (Secrets, Ingress, ServiceAccount). */}}
{{- define "bookshop.commonLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
{{ include "bookshop.metaLabels" . }}
{{- end }}

{{/* Selector labels of one service; argument: dict "root" $ "name" "books". */}}
{{- define "bookshop.selectorLabels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end }}

{{/* Selector labels of the `helm test` pod (the NetworkPolicies admit it). */}}
{{- define "bookshop.testSelectorLabels" -}}
app.kubernetes.io/component: helm-test
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one service's objects; argument: dict "root" $ "name" "books". */}}
{{- define "bookshop.labels" -}}
{{ include "bookshop.selectorLabels" . }}
{{ include "bookshop.metaLabels" .root }}
{{- end }}

{{/* Image of one service; argument: dict "root" $ "name" "books". */}}
{{- define "bookshop.image" -}}
{{- $values := index .root.Values .name -}}
{{- $repository := $values.image.repository -}}
{{- with .root.Values.image.registry }}{{ $repository = printf "%s/%s" (trimSuffix "/" .) $repository }}{{ end -}}
{{- printf "%s:%s" $repository (.root.Values.image.tag | default .root.Chart.AppVersion) -}}
{{- end }}

{{- define "bookshop.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "bookshop.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end }}

{{/* The Secret the chart creates from database.urls. */}}
{{- define "bookshop.databaseSecretName" -}}
{{- printf "%s-database" (include "bookshop.fullname" .) -}}
{{- end }}

{{/* The Secret holding one service's database URL; argument: dict "root" $ "name" "books". */}}
{{- define "bookshop.databaseSecret" -}}
{{- $values := index .root.Values .name -}}
{{- if $values.database.existingSecret -}}
{{- $values.database.existingSecret -}}
{{- else if .root.Values.database.create -}}
{{- include "bookshop.databaseSecretName" .root -}}
{{- else -}}
{{- required "database.existingSecret (or database.create with database.urls) is required: the chart runs no PostgreSQL" .root.Values.database.existingSecret -}}
{{- end -}}
{{- end }}

{{/* The Secret holding the fault-injection token, and its key. */}}
{{- define "bookshop.faultsSecret" -}}
{{- .Values.faults.existingSecret | default (printf "%s-faults" (include "bookshop.fullname" .)) -}}
{{- end }}

{{- define "bookshop.faultsSecretKey" -}}
{{- if .Values.faults.existingSecret }}{{ .Values.faults.existingSecretKey }}{{ else }}token{{ end -}}
{{- end }}

{{/* The Secret the chart creates from auth.publicKey and auth.shopToken. */}}
{{- define "bookshop.authSecretName" -}}
{{- printf "%s-auth" (include "bookshop.fullname" .) -}}
{{- end }}

{{/* The Secret holding the issuer's public key (issuer.pub) and shop's token (shop-books.jwt). */}}
{{- define "bookshop.authSecret" -}}
{{- if .Values.auth.publicKey -}}
{{- include "bookshop.authSecretName" . -}}
{{- else -}}
{{- required "auth.existingSecret (or auth.publicKey and auth.shopToken) is required: books refuses to start without the token issuer's public key" .Values.auth.existingSecret -}}
{{- end -}}
{{- end }}

{{/*
The key of the auth Secret that one service reads, mounted under the same name, and the
variable naming it: books verifies tokens (the public key), shop presents one to books (its
token). chat only reads books: nothing. Argument: the service name.
*/}}
{{- define "bookshop.authFile" -}}
{{- $files := dict "books" "issuer.pub" "shop" "shop-books.jwt" -}}
{{- get $files . -}}
{{- end }}

{{- define "bookshop.authFileVariable" -}}
{{- $variables := dict "books" "AUTH__PUBLIC_KEY_FILE" "shop" "DEPENDENCIES__BOOKS__TOKEN_FILE" -}}
{{- get $variables . -}}
{{- end }}

{{/*
Environment of every container of one service (the init containers too): the settings of
design §6, secrets as *_FILE variables naming the mounted files.
Argument: dict "root" $ "name" "books".
*/}}
{{- define "bookshop.settingsEnv" -}}
{{- $root := .root -}}
# The production profile (config.production.yml: 0.0.0.0, 5 s drain); the image sets it too.
- name: ENVIRONMENT
  value: production
- name: DATABASE_URL_FILE
  value: {{ include "bookshop.secretsDir" . }}/database-url
{{- with $root.Values.database.poolSize }}
- name: DATABASE__POOL_SIZE
  value: {{ . | quote }}
{{- end }}
{{- if not (kindIs "invalid" $root.Values.database.maxOverflow) }}
- name: DATABASE__MAX_OVERFLOW
  value: {{ $root.Values.database.maxOverflow | quote }}
{{- end }}
- name: LOGGING__LEVEL
  value: {{ $root.Values.logging.level | quote }}
- name: LOGGING__FORMAT
  value: {{ $root.Values.logging.format | quote }}
{{- end }}

{{/* Environment of one service's server container; argument: dict "root" $ "name" "books". */}}
{{- define "bookshop.serveEnv" -}}
{{- $root := .root -}}
{{ include "bookshop.settingsEnv" . }}
- name: FAULTS__ENABLED
  value: {{ $root.Values.faults.enabled | quote }}
{{- if $root.Values.faults.enabled }}
- name: FAULTS__TOKEN_FILE
  value: {{ include "bookshop.secretsDir" . }}/faults-token
{{- end }}
{{- range $dependency := splitList " " (include "bookshop.dependencies" .name) | compact }}
- name: DEPENDENCIES__{{ upper $dependency }}__BASE_URL
  value: http://{{ $dependency }}:{{ include "bookshop.port" $root }}
{{- end }}
{{- with include "bookshop.authFile" .name }}
- name: {{ include "bookshop.authFileVariable" $.name }}
  value: {{ include "bookshop.secretsDir" $root }}/{{ . }}
{{- end }}
{{- if eq .name "books" }}
- name: AUTH__ISSUER
  value: {{ $root.Values.auth.issuer | quote }}
{{- end }}
- name: OTEL_SERVICE_NAME
  value: {{ .name }}
{{- with $root.Values.telemetry.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- else }}
- name: OTEL_TRACES_EXPORTER
  value: none
{{- end }}
- name: OTEL_TRACES_SAMPLER
  value: {{ $root.Values.telemetry.sampler | quote }}
{{- with $root.Values.telemetry.samplerArg }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ . | quote }}
{{- end }}
{{- $attributes := list (printf "k8s.namespace.name=%s" $root.Release.Namespace) }}
{{- range $key, $value := $root.Values.telemetry.resourceAttributes }}
{{- $attributes = append $attributes (printf "%s=%s" $key (toString $value)) }}
{{- end }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ join "," $attributes | quote }}
{{- end }}
