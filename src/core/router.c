/* router: local / offline / unknown split for one relay (see router.h). */
#include "msghub/router.h"

#include <stdlib.h>

#include "msghub/util.h"

void mh_router_plan_init(mh_route_plan_t *plan, size_t n)
{
    size_t m = n ? n : 1;
    plan->local_ids = mh_xmalloc(m * sizeof(uint64_t));
    plan->local = mh_xmalloc(m * sizeof(void *));
    plan->offline = mh_xmalloc(m * sizeof(uint64_t));
    plan->unknown = mh_xmalloc(m * sizeof(uint64_t));
    plan->n_local = plan->n_offline = plan->n_unknown = 0;
}

void mh_router_plan_free(mh_route_plan_t *plan)
{
    free(plan->local_ids);
    free(plan->local);
    free(plan->offline);
    free(plan->unknown);
    plan->local_ids = plan->offline = plan->unknown = NULL;
    plan->local = NULL;
}

void mh_router_plan(const uint64_t *ids, size_t n, uint64_t last_id, mh_router_lookup_fn lookup,
                    void *ud, mh_route_plan_t *plan)
{
    plan->n_local = plan->n_offline = plan->n_unknown = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t id = ids[i];
        if (id > last_id) {
            plan->unknown[plan->n_unknown++] = id;
            continue;
        }
        void *sess = lookup(ud, id);
        if (sess) {
            plan->local_ids[plan->n_local] = id;
            plan->local[plan->n_local++] = sess;
        } else
            plan->offline[plan->n_offline++] = id;
    }
}
