#!/usr/bin/env bash
# Deploy the SoSoHappy backend to Kubernetes: migrations first, then the application, then the rollout.
#
#   k8s/deploy.sh [--context NAME] <small|large> <image-repo> <tag>
#
#   1. renders k8s/overlays/<size> and k8s/overlays/<size>/migrate with the image set to <image-repo>:<tag>
#      (a throwaway kustomization that references the overlay; no committed file is edited);
#      a <tag> of the form sha256:... is used as the image digest instead;
#   2. makes sure the namespace exists;
#   3. deletes the previous migration Job, applies the migration overlay (the Job, and for the small size
#      the in-cluster MySQL and MongoDB it migrates, so a fresh cluster has them before the Job runs) and
#      waits until the Job completes; a failed Job
#      (or one still running after MIGRATE_TIMEOUT seconds of polling) stops the deploy, with the Job's logs
#      printed; the budget is counted in polls (MIGRATE_TIMEOUT / POLL_SECONDS, rounded up), so a slow
#      kubectl or a loaded machine never cuts the wait short;
#   4. only then applies the application overlay;
#   5. waits for the rollout of both Deployments; if one does not finish within ROLLOUT_TIMEOUT, every
#      Deployment this run changed is rolled back to its previous revision and the script exits non-zero.
#
# Environment: KUBECTL (kubectl command, default "kubectl"; may carry flags, e.g. "kubectl --kubeconfig=x"),
# KUBE_CONTEXT (kubeconfig context; --context wins), MIGRATE_TIMEOUT (seconds, default 600),
# ROLLOUT_TIMEOUT (kubectl duration, default 10m), POLL_SECONDS (migration Job poll interval, default 5).
set -euo pipefail

NAMESPACE=sosohappy
IMAGE_NAME=sosohappy-backend
MIGRATE_JOB=sosohappy-migrate
DEPLOYMENTS=(sosohappy-api sosohappy-worker sosohappy-codec)

MIGRATE_TIMEOUT=${MIGRATE_TIMEOUT:-600}
ROLLOUT_TIMEOUT=${ROLLOUT_TIMEOUT:-10m}
POLL_SECONDS=${POLL_SECONDS:-5}

usage() {
    echo "usage: $0 [--context NAME] <small|large> <image-repo> <tag>" >&2
    exit 2
}

step() { printf '\n==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
die() {
    printf 'deploy: %s\n' "$*" >&2
    exit 1
}

context=${KUBE_CONTEXT:-}
while [[ $# -gt 0 && $1 == --* ]]; do
    case $1 in
        --context)
            [[ $# -ge 2 ]] || usage
            context=$2
            shift 2
            ;;
        --context=*)
            context=${1#--context=}
            shift
            ;;
        --help) usage ;;
        *) usage ;;
    esac
done
[[ $# -eq 3 ]] || usage
size=$1
repo=$2
tag=$3
case $size in
    small | large) ;;
    *) usage ;;
esac
[[ -n $repo && -n $tag ]] || usage
number='^[0-9]+([.][0-9]+)?$'
[[ $MIGRATE_TIMEOUT =~ $number ]] || die "MIGRATE_TIMEOUT '$MIGRATE_TIMEOUT' is not a number of seconds"
[[ $POLL_SECONDS =~ $number ]] || die "POLL_SECONDS '$POLL_SECONDS' is not a number of seconds"
# How many times the Job is polled before the deploy gives up: ceil(MIGRATE_TIMEOUT / POLL_SECONDS), at least 1.
max_polls=$(awk -v t="$MIGRATE_TIMEOUT" -v p="$POLL_SECONDS" \
    'BEGIN { if (p <= 0) { print "" } else { n = int(t / p); if (n * p < t) n++; if (n < 1) n = 1; print n } }')
[[ -n $max_polls ]] || die "POLL_SECONDS must be greater than 0"
[[ ${repo##*/} != *[:@]* ]] || die "image repo '$repo' must not carry a tag or digest; pass it as <tag>"
[[ $tag =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ || $tag =~ ^sha256:[0-9a-f]{64}$ ]] ||
    die "'$tag' is neither an image tag nor a sha256 digest"

read -r -a kubectl_cmd <<<"${KUBECTL:-kubectl}"
[[ ${#kubectl_cmd[@]} -gt 0 ]] || die "KUBECTL is empty"
if [[ -n $context ]]; then
    kubectl_cmd+=(--context "$context")
fi

kc() { "${kubectl_cmd[@]}" "$@"; }
kn() { "${kubectl_cmd[@]}" --namespace "$NAMESPACE" "$@"; }

k8s_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
overlay=$k8s_dir/overlays/$size
[[ -f $overlay/kustomization.yaml ]] || die "no overlay at $overlay"
[[ -f $overlay/migrate/kustomization.yaml ]] || die "no migration overlay at $overlay/migrate"

if [[ $tag == sha256:* ]]; then
    image_ref=$repo@$tag
    image_field="digest: $tag"
else
    image_ref=$repo:$tag
    image_field="newTag: \"$tag\""
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/sosohappy-deploy.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Kustomize only accepts resources relative to the kustomization, so reach the overlay from the temporary
# directory with enough "../" to get to / (extra ones stay at /) followed by the overlay's absolute path.
# render <overlay dir> <output file>
render() {
    local target=$1 out=$2 dir up="" d
    dir=$(mktemp -d "$work/kustomize.XXXXXX")
    d=$(cd "$dir" && pwd -P)
    while [[ $d != / ]]; do
        up+=../
        d=$(dirname "$d")
    done
    cat >"$dir/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ${up}${target#/}
images:
  - name: $IMAGE_NAME
    newName: $repo
    $image_field
EOF
    kc kustomize "$dir" >"$out"
    [[ -s $out ]] || die "kustomize rendered nothing for $target"
    if grep -Eq "image: *[\"']?$IMAGE_NAME([:@\"']|\$)" "$out"; then
        die "rendered $target still uses the unresolved image '$IMAGE_NAME'"
    fi
    grep -Fq "image: $image_ref" "$out" || die "rendered $target never uses $image_ref"
}

# job_state: prints Complete, Failed or nothing (still running, or the API did not answer this time).
job_state() {
    local conditions
    if ! conditions=$(kn get job "$MIGRATE_JOB" \
        -o jsonpath='{range .status.conditions[?(@.status=="True")]}{.type}{" "}{end}'); then
        echo "deploy: could not read Job $MIGRATE_JOB, retrying" >&2
        return 0
    fi
    case " $conditions " in
        *" Failed "*) echo Failed ;;
        *" Complete "*) echo Complete ;;
        *) echo "" ;;
    esac
}

migration_logs() {
    echo "---- migration Job $MIGRATE_JOB ----" >&2
    kn get pods --selector "job-name=$MIGRATE_JOB" -o wide >&2 || true
    kn logs --selector "job-name=$MIGRATE_JOB" --all-containers --prefix --tail=200 >&2 || true
    echo "----" >&2
}

# revision <deployment>: the Deployment's current revision number (empty if it does not exist yet).
revision() {
    kn get deployment "$1" --ignore-not-found \
        -o jsonpath='{.metadata.annotations.deployment\.kubernetes\.io/revision}'
}

step "deploying $image_ref with overlay '$size' to namespace $NAMESPACE${context:+ (context $context)}"

step "rendering $overlay and $overlay/migrate"
render "$overlay" "$work/app.yaml"
render "$overlay/migrate" "$work/migrate.yaml"
grep -Eq "^kind: Job$" "$work/migrate.yaml" || die "the migration overlay renders no Job"
grep -Eq "^  name: $MIGRATE_JOB$" "$work/migrate.yaml" || die "the migration overlay renders no $MIGRATE_JOB"
info "rendered $(grep -c '^kind:' "$work/app.yaml") application objects and the Job $MIGRATE_JOB"

step "ensuring namespace $NAMESPACE"
if kc get namespace "$NAMESPACE" >/dev/null 2>&1; then
    info "namespace $NAMESPACE exists"
else
    kc create namespace "$NAMESPACE"
fi

step "running migrations (Job $MIGRATE_JOB, timeout ${MIGRATE_TIMEOUT}s)"
kn delete job "$MIGRATE_JOB" --ignore-not-found --cascade=foreground --wait=true
kc apply -f "$work/migrate.yaml"
polls=0
while :; do
    state=$(job_state)
    polls=$((polls + 1))
    case $state in
        Complete)
            info "migrations completed"
            break
            ;;
        Failed)
            migration_logs
            die "migration Job $MIGRATE_JOB failed; the application was not changed"
            ;;
    esac
    if ((polls >= max_polls)); then
        migration_logs
        die "migration Job $MIGRATE_JOB did not finish within ${MIGRATE_TIMEOUT}s ($polls polls ${POLL_SECONDS}s apart); the application was not changed"
    fi
    sleep "$POLL_SECONDS"
done

before=()
for i in "${!DEPLOYMENTS[@]}"; do
    before[i]=$(revision "${DEPLOYMENTS[i]}")
    info "deployment/${DEPLOYMENTS[i]}: revision ${before[i]:-none} before this deploy"
done

step "applying overlay $size"
kc apply -f "$work/app.yaml"

step "waiting for the rollout (timeout $ROLLOUT_TIMEOUT per Deployment)"
failed=""
for deployment in "${DEPLOYMENTS[@]}"; do
    if ! kn rollout status "deployment/$deployment" --timeout="$ROLLOUT_TIMEOUT"; then
        failed=$deployment
        break
    fi
done

if [[ -n $failed ]]; then
    echo "deploy: deployment/$failed did not become ready within $ROLLOUT_TIMEOUT; rolling back" >&2
    kn get pods -o wide >&2 || true
    for i in "${!DEPLOYMENTS[@]}"; do
        deployment=${DEPLOYMENTS[i]}
        previous=${before[i]}
        current=$(revision "$deployment")
        if [[ -z $previous ]]; then
            info "deployment/$deployment: first rollout, nothing to roll back to"
        elif [[ $current == "$previous" ]]; then
            info "deployment/$deployment: unchanged by this deploy (revision $current), left as is"
        else
            step "rolling back deployment/$deployment to revision $previous"
            kn rollout undo "deployment/$deployment" --to-revision="$previous"
            kn rollout status "deployment/$deployment" --timeout="$ROLLOUT_TIMEOUT" || true
        fi
    done
    die "rollout of $image_ref failed and was rolled back"
fi

step "deployed $image_ref"
kn get deployments "${DEPLOYMENTS[@]}" -o wide
