#!/usr/bin/env bash
# Fuzzes the HTTP surface with schemathesis against the api's own /openapi.json: no request may
# get a 5xx, and every response must match the document (status code, content type, body schema).
#
# Starts a debug api and one worker on a database (ecom_fuzz) and Redis prefix (fuzz:) of their
# own, reset at every run, on a free port; seeds a little of everything (demo catalog, a customer
# with an address, a cart and orders paid by card and cash, payments, notifications, guest carts,
# a canary job) so that generated requests reach real resources and not only 404s; then runs
# schemathesis twice: with a customer's token and with an admin's. Exits non-zero when either
# run finds a failure. Needs PostgreSQL and Redis (`scripts/services.sh` starts them).
#
#   FUZZ_EXAMPLES  test cases per operation and phase (default 100: about 3 minutes in all on 2 cores)
#   FUZZ_SEED      reproduce a run (its seed is printed at the end of each run)
#   FUZZ_PORT      the api's port (default: a free one)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

SCHEMATHESIS_VERSION=4.32.5
EXAMPLES=${FUZZ_EXAMPLES:-100}
FUZZ_DB=$(db_url ecom_fuzz)
PORT=${FUZZ_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
venv=$TARGET_DIR/fuzz-venv
out=$TARGET_DIR/fuzz
base="http://127.0.0.1:$PORT"

if [ "$("$venv/bin/schemathesis" --version 2>/dev/null)" != "schemathesis, version $SCHEMATHESIS_VERSION" ]; then
  echo "installing schemathesis $SCHEMATHESIS_VERSION into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

cargo build --quiet --bin api --bin worker

rm -rf "$out/report-customer" "$out/report-admin"
mkdir -p "$out"
export DATABASE_URL="$FUZZ_DB" REDIS_KEY_PREFIX="fuzz:" HTTP_PORT=$PORT HTTP_WORKERS=2 \
       RUST_LOG=warn LOG_FORMAT=json RUN_MIGRATIONS=true APP_ENV=local \
       ADMIN_EMAIL=admin@fuzz.test ADMIN_PASSWORD=fuzz-admin-password \
       ACCESS_TOKEN_TTL_SECS=3600 SIMULATED_CAPTURE_DELAY_MS=200
# A fresh shop every run: what one run changed (archived products, cancelled orders) must not
# decide what the next one can reach.
redis-cli -u "${REDIS_URL:-redis://127.0.0.1:6379}" --scan --pattern 'fuzz:*' \
  | xargs -r redis-cli -u "${REDIS_URL:-redis://127.0.0.1:6379}" del >/dev/null
"$TARGET_DIR"/debug/api db-reset >/dev/null
"$TARGET_DIR"/debug/api seed >/dev/null

"$TARGET_DIR"/debug/api >"$out/api.log" 2>&1 & api=$!
"$TARGET_DIR"/debug/worker >"$out/worker.log" 2>&1 & worker=$!
# Both drain on SIGTERM; a canary the fuzzer sent may hold the worker for up to a minute, so
# whatever still runs after 5 s is killed (the fuzz shop is thrown away anyway).
stop() {
  kill -TERM $api $worker 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 $api 2>/dev/null || kill -0 $worker 2>/dev/null || break; sleep 0.1; done
  kill -KILL $api $worker 2>/dev/null || true
  wait $api $worker 2>/dev/null || true
}
trap stop EXIT
for _ in $(seq 1 150); do curl -fs "$base/health/ready" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fs "$base/health/ready" >/dev/null || { echo "api did not start:"; cat "$out/api.log"; exit 1; }

echo "seeding the fuzz shop on $base ..."
# Writes $out/schemathesis-{customer,admin}.toml: dictionaries of real identifiers (drawn for
# path parameters and body fields 80 % of the time; the rest is generated); and the two tokens.
FUZZ_BASE="$base" FUZZ_OUT="$out" python3 - <<'PY'
import json, os, time, urllib.request, uuid

base, out = os.environ["FUZZ_BASE"], os.environ["FUZZ_OUT"]

def call(method, path, body=None, token=None, headers=None, ok=(200, 201, 202, 204)):
    req = urllib.request.Request(base + path, method=method, headers=dict(headers or {}))
    if body is not None:
        req.data = json.dumps(body).encode()
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            status, raw = res.status, res.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    if status not in ok:
        raise SystemExit(f"seeding: {method} {path} -> {status}: {raw[:300]!r}")
    return json.loads(raw) if raw else None

admin = call("POST", "/v1/auth/login", {"email": "admin@fuzz.test", "password": "fuzz-admin-password"})
customer = call("POST", "/v1/auth/register", {"email": "customer@fuzz.test", "password": "customer-password",
                                               "firstName": "Fuzz", "lastName": "Customer"})
at, ct = admin["accessToken"], customer["accessToken"]
customers = [customer["customer"]["id"], admin["customer"]["id"]]

def product(sku):
    return call("POST", "/v1/products", {"sku": sku, "name": "Fuzz lamp", "initialStock": 1000,
                                         "price": {"amount": 2500, "currency": "USD"}}, at)["id"]

def address(token):
    return call("POST", "/v1/customers/me/addresses", {"fullName": "Ada Lovelace", "line1": "1 Loop",
                "city": "Cupertino", "postalCode": "95014", "country": "US"}, token)["id"]

def cart_with(token, *items):
    cart = call("POST", "/v1/carts", token=token)
    for item in items:
        call("POST", f"/v1/carts/{cart['id']}/items", {"productId": item, "quantity": 1}, token)
    return cart["id"]

def guest_cart():
    guest = call("POST", "/v1/carts")
    call("POST", f"/v1/carts/{guest['id']}/items", {"productId": products[3], "quantity": 1},
         headers={"X-Cart-Token": guest["cartToken"]})
    return guest

def checkout(method, payment_token=None):
    body = {"cartId": cart_with(ct, products[0], products[-1]), "paymentMethod": method,
            "shippingAddress": {"fullName": "Ada Lovelace", "line1": "1 Loop", "city": "Cupertino",
                                "postalCode": "95014", "country": "US"}}
    if payment_token:
        body["paymentToken"] = payment_token
    order = call("POST", "/v1/orders/checkout", body, ct, {"Idempotency-Key": str(uuid.uuid4())})
    # The saga runs in the worker; it clears the cart once the payment is through.
    deadline = time.time() + 20
    while time.time() < deadline and call("GET", f"/v1/orders/{order['id']}", token=ct)["status"] == "PENDING_PAYMENT":
        time.sleep(0.2)
    return order["id"]

def orders():
    return [checkout("CREDIT_CARD", "pm_card_visa"), checkout("CASH_ON_DELIVERY"),
            checkout("CREDIT_CARD", "pm_card_visa"), checkout("CREDIT_CARD", "pm_card_chargeDeclined")]

def spare_orders():
    return [checkout("CREDIT_CARD", "pm_card_visa"), checkout("CASH_ON_DELIVERY")]

products = [p["id"] for p in call("GET", "/v1/products?limit=8")["data"]]
products.append(product("FUZZ-1"))
# Each run gets resources of its own (the customer's run cancels orders, the admin's ships and
# refunds them), and deleting or cancelling operations get identifiers of their own: were they
# to draw from the shared ones, the first DELETE would leave every later operation on them with
# a 404, the first cancellation every later transition with a 409.
runs = {}
for who, token in (("customer", ct), ("admin", at)):
    runs[who] = {"token": token, "addresses": [address(token) for _ in range(3)],
                 "spare-addresses": [address(token) for _ in range(3)],
                 "spare-products": [product(f"FUZZ-{who.upper()}-{n}") for n in range(3)],
                 "orders": orders(), "spare-orders": spare_orders(), "guests": [guest_cart() for _ in range(3)],
                 "spare-guests": [guest_cart() for _ in range(3)]}
    runs[who]["cart"] = cart_with(token, products[1])
time.sleep(1)  # the simulated captures and their payment events
canary = call("POST", "/v1/admin/jobs/canary", {"holdMs": 0}, at)["jobId"]

def dictionary(values):
    return "{ values = " + json.dumps(values) + " }"

def binding(name):
    return '{ dictionary = "' + name + '", probability = 0.8 }'

for who, run in runs.items():
    payments = [p["id"] for o in run["orders"] + run["spare-orders"]
                for p in call("GET", f"/v1/orders/{o}/payments", token=ct)["data"]]
    notifications = [n["id"] for n in call("GET", "/v1/notifications?limit=50", token=run["token"])["data"]]
    guests, spare = run["guests"], run["spare-guests"]
    config = f"""# Written by scripts/fuzz.sh for the {who}'s run: identifiers of the seeded shop.
[cache]
directory = {json.dumps(os.path.abspath(out) + "/cache")}

[dictionaries]
products = {dictionary(products)}
spare-products = {dictionary(run["spare-products"])}
carts = {dictionary([run["cart"]] + [g["id"] for g in guests])}
spare-carts = {dictionary([g["id"] for g in spare])}
guest-carts = {dictionary([g["id"] for g in guests])}
cart-tokens = {dictionary([g["cartToken"] for g in guests + spare])}
addresses = {dictionary(run["addresses"])}
spare-addresses = {dictionary(run["spare-addresses"])}
orders = {dictionary(run["orders"])}
spare-orders = {dictionary(run["spare-orders"])}
payments = {dictionary(payments)}
notifications = {dictionary(notifications or [str(uuid.uuid4())])}
customers = {dictionary(customers)}
canaries = {dictionary([canary])}
payment-tokens = {dictionary(["pm_card_visa", "pm_card_chargeDeclined", "tok_unknown"])}

[parameters]
"path.productId" = {binding("products")}
"path.guestCartId" = {binding("guest-carts")}
"header.X-Cart-Token" = {binding("cart-tokens")}
"body.productId" = {binding("products")}
"body.cartId" = {binding("carts")}
"body.orderId" = {binding("orders")}
"body.shippingAddressId" = {binding("addresses")}
"body.paymentToken" = {binding("payment-tokens")}
"""
    # Operation names are "METHOD /path"; the patterns of one resource do not overlap.
    for regex, name in [("^(GET|PATCH) /v1/products/", "products"), ("^DELETE /v1/products/", "spare-products"),
                        ("^(GET|POST|PATCH) /v1/carts/", "carts"), ("^DELETE /v1/carts/", "spare-carts"),
                        ("^PATCH /v1/customers/me/addresses/", "addresses"),
                        ("^DELETE /v1/customers/me/addresses/", "spare-addresses"),
                        ("^GET /v1/admin/customers/", "customers"), ("^GET /v1/admin/jobs/canary/", "canaries"),
                        (r"^[A-Z]+ /v1/orders/\{id\}(/(payments|confirm|process|ship|deliver))?$", "orders"),
                        (r"^(POST|PATCH) /v1/orders/\{id\}/cancel$", "spare-orders"),
                        ("^[A-Z]+ /v1/payments/", "payments"),
                        ("^PATCH /v1/notifications/", "notifications")]:
        config += f"""
[[operations]]
include-name-regex = '{regex}'
parameters = {{ "path.id" = {binding(name)} }}
"""
    with open(f"{out}/schemathesis-{who}.toml", "w") as f:
        f.write(config)
    with open(f"{out}/{who}.token", "w") as f:
        f.write(run["token"])
    print(f"seeded for the {who}: {len(run['orders']) + len(run['spare-orders'])} orders, "
          f"{len(payments)} payments, {len(notifications)} notifications, {len(guests) + len(spare)} guest carts")
PY

# Not fuzzed:
# - GET /v1/ws is a WebSocket upgrade: schemathesis speaks plain HTTP, so every request would only
#   ever get 400 WEBSOCKET_UPGRADE_REQUIRED (or 401), and an upgrade that succeeded would leave
#   it waiting on an open socket. tests/e2e/notifications.rs drives it with a WebSocket client.
# - /docs (Swagger UI) is not in the document, so schemathesis never sees it.
# Checks: no 5xx, every status documented, the documented content type, the documented body.
checks=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance
failed=0
for who in customer admin; do
  echo "schemathesis as the $who ($EXAMPLES examples per operation) ..."
  args=(run "$base/openapi.json" --checks "$checks" --exclude-path /v1/ws
        --header "Authorization: Bearer $(cat "$out/$who.token")"
        --max-examples "$EXAMPLES" --workers 2 --request-timeout 30 --no-color
        --generation-database "$out/examples.db"
        --report junit,har --report-dir "$out/report-$who")
  [ -n "${FUZZ_SEED:-}" ] && args+=(--seed "$FUZZ_SEED")
  if ! "$venv/bin/schemathesis" --config-file "$out/schemathesis-$who.toml" "${args[@]}" >"$out/$who.txt" 2>&1; then
    failed=1
  fi
  sed -n '/^=* \(FAILURES\|SUMMARY\) =*$/,$p' "$out/$who.txt"
done

# actix's own "request parse error" lines are requests refused (400) before they reach the app.
errors=$(grep -h '"level":"ERROR"' "$out/api.log" "$out/worker.log" | grep -v '"target":"actix_http::h1::dispatcher"' || true)
if [ -n "$errors" ]; then
  echo "errors logged (see $out/api.log, $out/worker.log):"
  tail -n 5 <<<"$errors"
fi
echo "reports: $out/customer.txt, $out/admin.txt, $out/report-customer/, $out/report-admin/ (JUnit, HAR);" \
     "api log: $out/api.log"
if [ $failed -ne 0 ]; then
  echo "fuzz: schemathesis found failures" >&2
  exit 1
fi
echo "fuzz: no 5xx, every response matched the document"
