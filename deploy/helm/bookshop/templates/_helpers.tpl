{{/*
The services: every folder services/<name>/ that holds a service.yml, as deploy/service_registry.py
finds them. services/ is a symlink to the repository's services/ (`helm package` copies the
files in; .helmignore keeps out all but the two read here):
  services/<name>/service.yml               port (the order: design §8), credentials
                                            {dependency: [scopes]} (the tokens it presents),
                                            home (what a person opens first; /ui/ by default),
                                            language (python by default; others are skipped)
  services/<name>/src/<package>/config.yml  service.name (= <name>), dependencies (their keys);
                                            <package> is <name> with "-" as "_"
Each one's Deployment, Service, PDB, HPA and NetworkPolicy are named after it, not after the
release: the services reach each other at http://<name>:8000 and Prometheus' `job` is that name.
Checked as the registry checks them, so a broken folder fails the render with its reason.
JSON: {"names": [by port], "services": {<name>: {"port", "home", "dependencies": [sorted],
"credentials": {<dependency>: [scopes]}}}}; argument: the root context.
*/}}
{{- define "bookshop.registry" -}}
{{- $services := dict -}}
{{- $byPort := dict -}}
{{- range $path, $_ := .Files.Glob "services/*/service.yml" -}}
{{- $name := base (dir $path) -}}
{{- if not (regexMatch "^[a-z][a-z0-9]*(-[a-z0-9]+)*$" $name) -}}
{{- fail (printf "services/%s: a service's folder name must be like reviews or gift-cards" $name) -}}
{{- end -}}
{{- $manifest := $.Files.Get $path | fromYaml -}}
{{- if hasKey $manifest "Error" -}}
{{- fail (printf "%s must hold a mapping: %s" $path $manifest.Error) -}}
{{- end -}}
{{- if ne (toString ($manifest.language | default "python")) "python" -}}
{{- continue -}}{{- /* the Go gateway has no image yet (service_registry.python_services) */ -}}
{{- end -}}
{{- $port := $manifest.port -}}
{{- if not (and (kindIs "float64" $port) (eq (float64 (int $port)) $port) (ge (int $port) 1024) (le (int $port) 65535)) -}}
{{- fail (printf "%s: port must be a number from 1024 to 65535" $path) -}}
{{- end -}}
{{- $key := printf "%05d" (int $port) -}}
{{- if hasKey $byPort $key -}}
{{- fail (printf "%s and %s both declare port %d" $name (get $byPort $key) (int $port)) -}}
{{- end -}}
{{- $_ := set $byPort $key $name -}}
{{- $configPath := printf "services/%s/src/%s/config.yml" $name (replace "-" "_" $name) -}}
{{- $configText := $.Files.Get $configPath -}}
{{- if not $configText -}}
{{- fail (printf "%s is missing (or empty)" $configPath) -}}
{{- end -}}
{{- $config := $configText | fromYaml -}}
{{- if hasKey $config "Error" -}}
{{- fail (printf "%s must hold a mapping: %s" $configPath $config.Error) -}}
{{- end -}}
{{- if ne ((($config.service | default dict).name) | toString) $name -}}
{{- fail (printf "%s: service.name must be %q, the folder's name" $configPath $name) -}}
{{- end -}}
{{- $dependencies := keys ($config.dependencies | default dict) | sortAlpha -}}
{{- $credentials := dict -}}
{{- range $dependency, $scopes := $manifest.credentials | default dict -}}
{{- if not (has $dependency $dependencies) -}}
{{- fail (printf "%s: credentials for %s, which %s does not declare under dependencies" $path $dependency $configPath) -}}
{{- end -}}
{{- $_ := set $credentials $dependency ($scopes | default list) -}}
{{- end -}}
{{- $home := $manifest.home | default "/ui/" -}}
{{- if not (and (kindIs "string" $home) (hasPrefix "/" $home)) -}}
{{- fail (printf "%s: home must be a path such as /ui/" $path) -}}
{{- end -}}
{{- $_ := set $services $name (dict "port" (int $port) "home" $home "dependencies" $dependencies "credentials" $credentials) -}}
{{- end -}}
{{- if not $services -}}
{{- fail "no service found: services/*/service.yml is empty in the chart. services/ must be the symlink to the repository's services/ (a checkout without symlinks, e.g. git's core.symlinks=false, has a text file there instead); or package the chart from such a checkout" -}}
{{- end -}}
{{- $names := list -}}
{{- range $key := keys $byPort | sortAlpha -}}
{{- $names = append $names (get $byPort $key) -}}
{{- end -}}
{{- range $name, $service := $services -}}
{{- range $dependency := $service.dependencies -}}
{{- if not (hasKey $services $dependency) -}}
{{- fail (printf "%s depends on %s, which no folder services/%s/ is" $name $dependency $dependency) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson (dict "names" $names "services" $services) -}}
{{- end }}

{{/* The services' names, space-separated, in the order of their ports. */}}
{{- define "bookshop.services" -}}
{{- (include "bookshop.registry" . | fromJson).names | join " " -}}
{{- end }}

{{/*
One service's values: serviceDefaults with services.<name> on top (a key given there wins, a
map merges key by key, a list replaces), "{name}" in image.repository and database.key made
the service's name. JSON; argument: dict "root" $ "name" "books".
*/}}
{{- define "bookshop.values" -}}
{{- $values := deepCopy .root.Values.serviceDefaults -}}
{{- include "bookshop.mergeInto" (dict "target" $values "source" (get (.root.Values.services | default dict) .name | default dict)) -}}
{{- $_ := set $values.image "repository" (replace "{name}" .name $values.image.repository) -}}
{{- $_ := set $values.database "key" (replace "{name}" .name $values.database.key) -}}
{{- toJson $values -}}
{{- end }}

{{/* Merges map .source into map .target, in place (maps key by key; anything else replaced). */}}
{{- define "bookshop.mergeInto" -}}
{{- $target := .target -}}
{{- range $key, $value := .source -}}
{{- $current := get $target $key -}}
{{- if and (kindIs "map" $value) (kindIs "map" $current) -}}
{{- include "bookshop.mergeInto" (dict "target" $current "source" $value) -}}
{{- else if kindIs "invalid" $value -}}
{{- $_ := unset $target $key -}}
{{- else -}}
{{- $_ := set $target $key (deepCopy $value) -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/*
What the schema cannot check: keys that name services must name discovered ones, and a
Secret the chart makes from auth.* needs every token a service.yml asks for. Argument: $.
*/}}
{{- define "bookshop.checkValues" -}}
{{- $registry := include "bookshop.registry" . | fromJson -}}
{{- $found := printf "the services are %s (folders services/<name>/ with a service.yml)" (join ", " $registry.names) -}}
{{- range $what, $map := dict "services" .Values.services "database.urls" .Values.database.urls "ingress.hosts" .Values.ingress.hosts -}}
{{- range $name, $_ := $map -}}
{{- if not (hasKey $registry.services $name) -}}
{{- fail (printf "%s.%s: no such service; %s" $what $name $found) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $tokens := include "bookshop.authTokens" . | fromJsonArray -}}
{{- range $key, $_ := .Values.auth.tokens -}}
{{- if not (has $key $tokens) -}}
{{- fail (printf "auth.tokens.%s: no service.yml asks for it; the tokens are <service>-<dependency> of each service's credentials: %s" $key (join ", " $tokens | default "none")) -}}
{{- end -}}
{{- end -}}
{{- if .Values.auth.publicKey -}}
{{- range $key := $tokens -}}
{{- if not (get $.Values.auth.tokens $key) -}}
{{- fail (printf "auth.tokens.%s is required with auth.publicKey: the chart then creates the auth Secret with the key and every token the services present (%s)" $key (join ", " $tokens)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/*
The tokens the services present, "<service>-<dependency>" for each credential of each
service.yml (the auth Secret's keys "<service>-<dependency>.jwt"). JSON list; argument: $.
*/}}
{{- define "bookshop.authTokens" -}}
{{- $registry := include "bookshop.registry" . | fromJson -}}
{{- $tokens := list -}}
{{- range $name := $registry.names -}}
{{- range $dependency := keys (index $registry.services $name).credentials | sortAlpha -}}
{{- $tokens = append $tokens (printf "%s-%s" $name $dependency) -}}
{{- end -}}
{{- end -}}
{{- toJson $tokens -}}
{{- end }}

{{/* A name as it starts an environment variable: gift-cards -> GIFT_CARDS. */}}
{{- define "bookshop.envName" -}}
{{- . | upper | replace "-" "_" -}}
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

{{/*
Labels of one service's objects; argument: dict "root" $ "name" "books". The component label
tells the services from the demo infrastructure (Prometheus' discovery keeps only these).
*/}}
{{- define "bookshop.labels" -}}
{{ include "bookshop.selectorLabels" . }}
app.kubernetes.io/component: service
{{ include "bookshop.metaLabels" .root }}
{{- end }}

{{/*
A service's context, what the templates below take for one service:
  dict "root" $ "name" "books" "values" <bookshop.values of it> "service" <its registry entry>
*/}}

{{/* Image of one service; argument: its context. */}}
{{- define "bookshop.image" -}}
{{- $repository := .values.image.repository -}}
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

{{/* The Secret holding one service's database URL; argument: its context. */}}
{{- define "bookshop.databaseSecret" -}}
{{- if .values.database.existingSecret -}}
{{- .values.database.existingSecret -}}
{{- else if or .root.Values.database.create .root.Values.infrastructure.postgresql.enabled -}}
{{- include "bookshop.databaseSecretName" .root -}}
{{- else -}}
{{- required "database.existingSecret (or database.create with database.urls, or infrastructure.postgresql.enabled) is required: a service needs its database URL" .root.Values.database.existingSecret -}}
{{- end -}}
{{- end }}

{{/* The Secret holding the fault-injection token, and its key. */}}
{{- define "bookshop.faultsSecret" -}}
{{- .Values.faults.existingSecret | default (printf "%s-faults" (include "bookshop.fullname" .)) -}}
{{- end }}

{{- define "bookshop.faultsSecretKey" -}}
{{- if .Values.faults.existingSecret }}{{ .Values.faults.existingSecretKey }}{{ else }}token{{ end -}}
{{- end }}

{{/* The Secret the chart creates from auth.publicKey and auth.tokens. */}}
{{- define "bookshop.authSecretName" -}}
{{- printf "%s-auth" (include "bookshop.fullname" .) -}}
{{- end }}

{{/*
The Secret holding the issuer's public key (issuer.pub) and the services' tokens
(<service>-<dependency>.jwt).
*/}}
{{- define "bookshop.authSecret" -}}
{{- if .Values.auth.publicKey -}}
{{- include "bookshop.authSecretName" . -}}
{{- else -}}
{{- required "auth.existingSecret (or auth.publicKey and auth.tokens) is required: a service with secured operations refuses to start without the token issuer's public key" .Values.auth.existingSecret -}}
{{- end -}}
{{- end }}

{{/*
The keys of the auth Secret one service reads, each mounted under its own name, and the
variable naming it: every service the issuer's public key (a public key is no secret; a service
without secured operations ignores it), and each credential of its service.yml, the token it
presents to that dependency. JSON {key: variable}; argument: its context.
*/}}
{{- define "bookshop.authFiles" -}}
{{- $files := dict "issuer.pub" "AUTH__PUBLIC_KEY_FILE" -}}
{{- range $dependency, $_ := .service.credentials -}}
{{- $_ := set $files (printf "%s-%s.jwt" $.name $dependency) (printf "DEPENDENCIES__%s__TOKEN_FILE" (include "bookshop.envName" $dependency)) -}}
{{- end -}}
{{- toJson $files -}}
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

{{/* Environment of one service's server container; argument: its context. */}}
{{- define "bookshop.serveEnv" -}}
{{- $root := .root -}}
{{ include "bookshop.settingsEnv" . }}
- name: FAULTS__ENABLED
  value: {{ $root.Values.faults.enabled | quote }}
{{- if $root.Values.faults.enabled }}
- name: FAULTS__TOKEN_FILE
  value: {{ include "bookshop.secretsDir" . }}/faults-token
{{- end }}
{{- /* the neighbours of its config.yml, at their Services */}}
{{- range $dependency := .service.dependencies }}
- name: DEPENDENCIES__{{ include "bookshop.envName" $dependency }}__BASE_URL
  value: http://{{ $dependency }}:{{ include "bookshop.port" $root }}
{{- end }}
{{- range $key, $variable := include "bookshop.authFiles" . | fromJson }}
- name: {{ $variable }}
  value: {{ include "bookshop.secretsDir" $root }}/{{ $key }}
{{- end }}
- name: AUTH__ISSUER
  value: {{ $root.Values.auth.issuer | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ .name }}
{{- with include "bookshop.otlpEndpoint" $root }}
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
