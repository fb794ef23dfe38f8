{{/*
The demo infrastructure (infrastructure.*: PostgreSQL, Jaeger, Prometheus, Grafana), off by
default and on in values-minikube.yaml. Each piece is what deploy/compose/compose.yaml runs: the
same image, settings and memory limit. Their files are the repository's own, read through two
symlinks of the chart (`helm package` copies the files in; .helmignore keeps out the rest):
  observability/  -> the repository's observability/: the alert rules, Grafana's provisioning
                     and dashboards, byte for byte (tests/deploy/test_minikube.py)
  postgres/       -> deploy/compose/postgres/: the script that makes a database and a role per
                     service
Each piece's objects are named as its compose service (postgres, jaeger, prometheus, grafana),
so that the services, the datasources and the rules find them by the same names as in compose.
*/}}

{{/* Selector labels of one piece; argument: dict "root" $ "name" "postgres". */}}
{{- define "bookshop.infrastructure.selectorLabels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: infrastructure
{{- end }}

{{/* Labels of one piece's objects; argument: dict "root" $ "name" "postgres". */}}
{{- define "bookshop.infrastructure.labels" -}}
{{ include "bookshop.infrastructure.selectorLabels" . }}
{{ include "bookshop.metaLabels" .root }}
{{- end }}

{{/* Where the services send their spans: telemetry.otlpEndpoint, else the release's Jaeger. */}}
{{- define "bookshop.otlpEndpoint" -}}
{{- if .Values.telemetry.otlpEndpoint -}}
{{- .Values.telemetry.otlpEndpoint -}}
{{- else if .Values.infrastructure.jaeger.enabled -}}
http://jaeger:4318
{{- end -}}
{{- end }}

{{/* The Secret of the release's PostgreSQL: its superuser's and the service roles' passwords. */}}
{{- define "bookshop.postgresSecretName" -}}
{{- printf "%s-postgres" (include "bookshop.fullname" .) -}}
{{- end }}

{{/*
A password that outlives upgrades: the value given, else the one the Secret already holds (an
upgrade, or a reinstall after `helm uninstall`, which keeps that Secret), else a new random one.
`helm template` has no cluster to look in, so it shows a new one at every render.
Argument: dict "root" $ "secret" <name> "key" <key> "given" <value>.
*/}}
{{- define "bookshop.keptPassword" -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .secret -}}
{{- $kept := "" -}}
{{- if $existing -}}
{{- $kept = get ($existing.data | default dict) .key | b64dec -}}
{{- end -}}
{{- .given | default $kept | default (randAlphaNum 32) -}}
{{- end }}

{{/*
The security context of every infrastructure container: nothing to escalate, no capability, a
read-only root filesystem (each writes only to its volumes).
*/}}
{{- define "bookshop.infrastructure.securityContext" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end }}

{{/* The pod security context of one piece; argument: its values (runAsUser etc. of its image). */}}
{{- define "bookshop.infrastructure.podSecurityContext" -}}
runAsNonRoot: true
seccompProfile:
  type: RuntimeDefault
{{ toYaml .podSecurityContext }}
{{- end }}
