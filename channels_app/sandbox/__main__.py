"""Run one sandbox channel in the foreground.

    python -m channels_app.sandbox --kind shopify --port 9101 --hub http://127.0.0.1:8000 \
        --channel demo-shopify --secret whsec_... --token shpat_...
"""

from __future__ import annotations

import argparse
import json
import signal
import sys

from . import KINDS, build_sandbox


def credentials_for(kind: str, args: argparse.Namespace) -> dict | None:
    """Map the generic --token/--key/--api-secret flags onto each platform's credential names."""
    creds: dict[str, str] = {}
    if kind in ("shopify", "bigcommerce", "amazon") and args.token:
        creds["access_token"] = args.token
    if kind == "woocommerce":
        if args.token or args.key:
            creds["consumer_key"] = args.key or args.token
        if args.api_secret:
            creds["consumer_secret"] = args.api_secret
    if kind == "bigcommerce" and args.store_hash:
        creds["store_hash"] = args.store_hash
    if kind == "amazon" and args.seller_id:
        creds["seller_id"] = args.seller_id
    if kind == "standard":
        if args.signing_secret or args.token:
            creds["signing_secret"] = args.signing_secret or args.token
        if args.api_key:
            creds["api_key"] = args.api_key
    return creds or None


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m channels_app.sandbox", description=__doc__.splitlines()[0])
    parser.add_argument("--kind", required=True, choices=sorted(KINDS))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--hub", help="hub base URL; webhooks go to <hub>/webhooks/<channel>/")
    parser.add_argument("--channel", help="channel slug used in the webhook URL")
    parser.add_argument("--secret", help="webhook signing secret (whsec_... for BigCommerce and Standard)")
    parser.add_argument("--token", help="API token the hub must present (Shopify/BigCommerce/Amazon; Woo consumer key)")
    parser.add_argument("--key", help="WooCommerce consumer key")
    parser.add_argument("--api-secret", help="WooCommerce consumer secret")
    parser.add_argument("--store-hash", help="BigCommerce store hash expected in the path")
    parser.add_argument("--seller-id", help="Amazon seller id expected in the path")
    parser.add_argument("--signing-secret", help="Standard: secret the hub signs its pushes with")
    parser.add_argument("--api-key", help="Standard: bearer key accepted on reads")
    parser.add_argument("--plan", help="plan preset name or JSON object of limit overrides")
    parser.add_argument("--catalog", help='JSON file: a list of catalog items, or {"items": [...]}')
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)

    plan = None
    if args.plan:
        plan = json.loads(args.plan) if args.plan.lstrip().startswith("{") else args.plan
    catalog = None
    if args.catalog:
        with open(args.catalog, encoding="utf-8") as handle:
            loaded = json.load(handle)
        catalog = loaded["items"] if isinstance(loaded, dict) else loaded
    sandbox = build_sandbox(
        args.kind,
        host=args.host,
        port=args.port,
        hub_url=args.hub,
        channel_slug=args.channel,
        webhook_secret=args.secret,
        credentials=credentials_for(args.kind, args),
        plan=plan,
        catalog=catalog,
        verbose=args.verbose,
    )
    print(f"{args.kind} sandbox on {sandbox.url} (control API under {sandbox.url}/_sandbox/)", flush=True)
    # `make run` stops its children with SIGTERM: leave as cleanly as on Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        sandbox.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
