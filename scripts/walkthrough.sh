#!/usr/bin/env bash
# The walkthrough of the seed tutorial ("DVC 0.x, MNIST"), with repro instead of dvc and every
# stage running in the pinned image repro-mnist:latest. Runs in the environment container
# (./start_environment.sh walkthrough) in /home/repro/walkthrough, which holds code/ at the
# start. Each command is printed as `$$ command` before it runs, like the tutorial's prompt.
set -euo pipefail
# One stream: without a terminal, docker would deliver stdout and stderr out of order.
exec 2>&1

work=${REPRO_WALKTHROUGH_DIR:-/home/repro/walkthrough}
remote=${REPRO_REMOTE_DIR:-/remote}

section() { printf '\n### %s\n' "$*"; }
# show ARG…: the command as one would type it, quoting the arguments that need it.
show() {
    local arg line='$$'
    for arg in "$@"; do
        if [[ $arg =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then line+=" $arg"; else line+=" '${arg//\'/\'\\\'\'}'"; fi
    done
    printf '%s\n' "$line"
}
run() { show "$@"; "$@"; }
# A command given as one string, for redirections: run_sh "echo x > file".
run_sh() { printf '$$ %s\n' "$1"; bash -c "$1"; }
# A command the tutorial shows failing (e.g. `ls data` where there is no data).
run_fails() {
    show "$@"
    if "$@"; then
        echo "walkthrough: error: '$*' was expected to fail" >&2
        exit 1
    fi
}
trap 'echo "walkthrough: error: the command above failed (exit $?); stopping" >&2' ERR

cd "$work"
[ -d code ] || { echo "walkthrough: error: $work/code is missing; start with ./start_environment.sh" >&2; exit 1; }
if [ -e .git ] || [ -e .repro ]; then
    # A second run in the same container: start again from code/ alone.
    echo "walkthrough: resetting $work to code/ only"
    find . -mindepth 1 -maxdepth 1 -not -name code -exec rm -rf {} +
fi
# The fake remote outlives containers (a named volume): clear what an earlier run left there.
rm -rf "$remote/git-repo" "$remote/repro-cache"
started=$SECONDS

section "Prepare the repository"
run git init
run git add code
run git commit -q -m "initial import"
run repro init --image repro-mnist:latest
run git status --short
run git add .repro
run git commit -q -m "init repro"
run git tag -a 0.0 -m "freshly initialized with no pipeline defined, yet"
branch=$(git symbolic-ref --short HEAD)

section "Define the pipeline"
run mkdir -p config
run_sh "echo '{ \"num_images\" : 1000 }' > config/load.json"
run_sh "echo '{ \"num_conv_filters\" : 32 }' > config/train.json"
run git add config/load.json config/train.json
run git commit -q -m "add config"

run repro run -f load.repro -d code/load.py -d config/load.json -o data python3 code/load.py
run git status --short
run cat .gitignore
run git add .gitignore load.repro
run git commit -q -m "init load stage"

run repro run -f train.repro -d code/train.py -d data -d config/train.json -o model/model.pt \
    python3 code/train.py
run repro run -f evaluate.repro -d code/evaluate.py -d model/model.pt -M model/metrics.json \
    python3 code/evaluate.py
run cat model/metrics.json
run git status --short
run git add --all
run git commit -q -m "init train and evaluate stages"
run git tag -a 0.1 -m "initial pipeline version 0.1"
run cat train.repro
run repro pipeline show --ascii evaluate.repro

section "repro-cached files"
run git checkout -q 0.0
run repro checkout
run_fails ls data
run git checkout -q 0.1
run repro checkout
run ls data
# Tags leave a detached HEAD: go back to the branch before committing anything new.
run git checkout -q "$branch"
run repro checkout

section "Reproduce the pipeline"
run repro repro evaluate.repro
run_sh "echo '{ \"num_images\" : 2000 }' > config/load.json"
run repro repro evaluate.repro
run git status --short
run git diff load.repro
run git add load.repro train.repro evaluate.repro config/load.json model/metrics.json
run git commit -q -m "0.2 more training data"
run git tag -a 0.2 -m "0.2 more training data"

section "Reproduce partially"
run_sh "echo '{ \"num_conv_filters\" : 64 }' > config/train.json"
run repro repro train.repro
run repro repro evaluate.repro
run_sh "echo '{ \"num_images\" : 3000 }' > config/load.json"
run repro repro evaluate.repro
run git add config/load.json config/train.json evaluate.repro load.repro train.repro model/metrics.json
run git commit -q -m "0.3 more training data, more convolutions"
run git tag -a 0.3 -m "0.3 more training data, more convolutions"

section "Compare versions"
run repro metrics show -T
run repro metrics modify model/metrics.json --type json --xpath acc
run cat evaluate.repro
run git add evaluate.repro
run git commit -q -m "show only the accuracy"
run repro metrics show -T
# The same history as a picture: one offline HTML page (PNG/SVG too with the [plots] extra).
run repro plots metrics -T -o /tmp/accuracy
run ls /tmp/accuracy

section "Share data"
run mkdir -p "$remote/repro-cache"
run repro remote add -d fake_remote "$remote/repro-cache"
run git add .repro/config
run git commit -q -m "configure remote"
run git clone -q --bare . "$remote/git-repo"
run git remote add origin "$remote/git-repo"
run repro push -T
run git push -q --tags origin "$branch"
run repro status -c

printf '\nwalkthrough: done in %ss; next: ./start_environment.sh clone\n' $((SECONDS - started))
