# kiln's Makefile. `make dev` and `make test` are the two entry points; see README.md.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Pinned tool versions. Each tool is built from source once, cached per user
# under TOOLS_CACHE keyed by name and version, and linked into bin/.
TEMPORAL_VERSION  := v1.5.1
ETCD_VERSION      := v3.6.16
KUBE_VERSION      := v1.36.3
TEKTON_VERSION    := v1.15.1
KWOK_VERSION      := v0.8.0
VERSITYGW_VERSION := v1.8.0

TOOLS_CACHE ?= $(HOME)/.cache/kiln/tools
GO          ?= go
GOTEST_FLAGS ?=

KUBE_LDFLAGS := -X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION) \
	-X k8s.io/component-base/version.gitMajor=1 \
	-X k8s.io/component-base/version.gitMinor=36 \
	-X k8s.io/component-base/version.gitTreeState=clean

TOOLS := temporal etcd kube-apiserver kube-scheduler tekton-controller kwok versitygw

# The wrapper modules' builds are keyed by their go.sum's hash, not by file
# times: a fresh clone then links the cached builds instead of rebuilding.
sum8 = $(shell sha256sum $(1) | cut -c1-8)
ETCD_KEY   := $(ETCD_VERSION)-$(call sum8,test/tools/etcd/go.sum)
KUBE_KEY   := $(KUBE_VERSION)-$(call sum8,test/tools/kube/go.sum)
TEKTON_KEY := $(TEKTON_VERSION)-$(call sum8,test/tools/tekton/go.sum)

.PHONY: help
help: ## Show the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

.PHONY: tools
tools: $(addprefix bin/,$(TOOLS)) ## Build the pinned test tools (once) and link them into bin/.

# tool-link NAME VERSION: bin/NAME is a symlink to the cached build.
define tool-link
bin/$(1): $(TOOLS_CACHE)/$(1)-$(2)
	@mkdir -p bin && ln -sfn $$< $$@
endef
$(eval $(call tool-link,temporal,$(TEMPORAL_VERSION)))
$(eval $(call tool-link,etcd,$(ETCD_KEY)))
$(eval $(call tool-link,kube-apiserver,$(KUBE_KEY)))
$(eval $(call tool-link,kube-scheduler,$(KUBE_KEY)))
$(eval $(call tool-link,tekton-controller,$(TEKTON_KEY)))
$(eval $(call tool-link,kwok,$(KWOK_VERSION)))
$(eval $(call tool-link,versitygw,$(VERSITYGW_VERSION)))

# Builds write to a temporary name and rename, so an interrupted build never
# leaves a broken binary in the cache.
$(TOOLS_CACHE)/temporal-$(TEMPORAL_VERSION):
	@echo ">> building temporal $(TEMPORAL_VERSION) (about 10 min cold)"
	@mkdir -p $(@D)/.gobin-temporal
	GOBIN=$(@D)/.gobin-temporal $(GO) install -trimpath github.com/temporalio/cli/cmd/temporal@$(TEMPORAL_VERSION)
	mv $(@D)/.gobin-temporal/temporal $@

$(TOOLS_CACHE)/kwok-$(KWOK_VERSION):
	@echo ">> building kwok $(KWOK_VERSION) (about 4 min cold)"
	@mkdir -p $(@D)/.gobin-kwok
	GOBIN=$(@D)/.gobin-kwok $(GO) install -trimpath sigs.k8s.io/kwok/cmd/kwok@$(KWOK_VERSION)
	mv $(@D)/.gobin-kwok/kwok $@

$(TOOLS_CACHE)/versitygw-$(VERSITYGW_VERSION):
	@echo ">> building versitygw $(VERSITYGW_VERSION), an S3 server (about 2 min cold)"
	@mkdir -p $(@D)/.gobin-versitygw
	GOBIN=$(@D)/.gobin-versitygw $(GO) install -trimpath github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION)
	mv $(@D)/.gobin-versitygw/versitygw $@

$(TOOLS_CACHE)/etcd-$(ETCD_KEY):
	@echo ">> building etcd $(ETCD_VERSION) (about 2 min cold)"
	@mkdir -p $(@D)
	cd test/tools/etcd && $(GO) build -trimpath -o $@.tmp . && mv $@.tmp $@

$(TOOLS_CACHE)/kube-apiserver-$(KUBE_KEY):
	@echo ">> building kube-apiserver $(KUBE_VERSION) (about 9 min cold)"
	@mkdir -p $(@D)
	cd test/tools/kube && $(GO) build -trimpath -ldflags '$(KUBE_LDFLAGS)' -o $@.tmp ./kube-apiserver && mv $@.tmp $@

$(TOOLS_CACHE)/kube-scheduler-$(KUBE_KEY):
	@echo ">> building kube-scheduler $(KUBE_VERSION) (about 3 min after kube-apiserver)"
	@mkdir -p $(@D)
	cd test/tools/kube && $(GO) build -trimpath -ldflags '$(KUBE_LDFLAGS)' -o $@.tmp ./kube-scheduler && mv $@.tmp $@

$(TOOLS_CACHE)/tekton-controller-$(TEKTON_KEY):
	@echo ">> building the Tekton controller $(TEKTON_VERSION) (about 4 min cold)"
	@mkdir -p $(@D)
	cd test/tools/tekton && $(GO) build -trimpath -o $@.tmp github.com/tektoncd/pipeline/cmd/controller && mv $@.tmp $@

# ---------------------------------------------------------------------------
# make dev: kiln on this machine, no cluster: Temporal with its UI, an S3
# server, a mail sink and a worker with the local executor, then a demo
# build (deploy/dev). It needs only two of the tools (about 12 minutes cold).

.PHONY: dev
dev: bin/temporal bin/versitygw ## Run kiln on this machine (Temporal UI, S3, mail sink, local executor) and a demo build; Ctrl-C stops all.
	$(GO) build -o bin/kiln ./cmd/kiln
	bin/kiln dev $(DEV_FLAGS)

.PHONY: dev-cluster
dev-cluster: tools ## The same against the real Tekton controller on kwok (a simulated cluster) in a network namespace.
	$(GO) build -o bin/kiln ./cmd/kiln
	$(GO) build -o bin/devstack ./test/devstack
	bin/devstack $(DEV_FLAGS)

# ---------------------------------------------------------------------------
# Tests.
#
# Tier 1 (`go test ./...`): unit tests, and tests against the real
# kube-apiserver + etcd with Tekton's CRDs (test/kubestack).
# Tier 2 (build tag e2e): the real Tekton controller, kube-scheduler and
# kwok, plus a Temporal dev server. The Tekton controller binds fixed ports,
# so tier 2 runs in a private network namespace through test/netns-run; the
# test binaries are compiled first because the namespace has no network.
# KILN_REQUIRE_TOOLS turns "tools missing" from a skip into a failure.

E2E_TIER := ./test/kubestack ./test/e2e ./test/devtest
TEST_OUT    := $(CURDIR)/bin/tests

.PHONY: test
test: tools check ## Build the tools, then run every test, end to end included.
	KILN_REQUIRE_TOOLS=1 $(GO) test -count=1 $(GOTEST_FLAGS) ./...
	@mkdir -p $(TEST_OUT)
	$(GO) build -o bin/kiln ./cmd/kiln
	@set -e; for pkg in $(E2E_TIER); do \
		name=$$(basename $$pkg); \
		$(GO) test -c -tags e2e -o $(TEST_OUT)/$$name.test $$pkg; \
		echo ">> e2e tier: $$pkg"; \
		(cd $$pkg && KILN_REQUIRE_TOOLS=1 KILN_BIN=$(CURDIR)/bin $(CURDIR)/test/netns-run $(TEST_OUT)/$$name.test -test.v -test.count=1 $(TEST_RUN_FLAGS)); \
	done

.PHONY: check
check: ## gofmt and go vet, with and without the e2e tag.
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null; git ls-files --others --exclude-standard '*.go' 2>/dev/null)); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags e2e $(E2E_TIER)

.PHONY: bench
bench: tools ## Run the benchmarks against the real API server and print their numbers.
	KILN_REQUIRE_TOOLS=1 $(GO) test -run '^$$' -bench . -benchtime 3x -timeout 40m $(GOTEST_FLAGS) ./...
