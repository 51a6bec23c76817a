"""Admin: layouts, bins and restrictions are edited here; a layout's "Route" page draws a route as SVG."""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, render
from django.urls import path, reverse
from django.utils.html import format_html

from picking_app import selectors, svg
from picking_app.distances import Metric
from picking_app.geometry import Point
from picking_app.models import Bin, Layout, PickList, PickListLine, Restriction
from picking_app.solvers import SOLVERS


class RestrictionInline(admin.TabularInline):
    model = Restriction
    extra = 0


@admin.register(Layout)
class LayoutAdmin(admin.ModelAdmin):
    list_display = ["__str__", "location", "aisles", "blocks", "cells_per_block", "aisle_pitch", "depot_aisle",
                    "depot_side", "route_link"]
    search_fields = ["name", "location__code"]
    inlines = [RestrictionInline]
    readonly_fields = ["created_at", "updated_at", "route_link"]

    def get_urls(self):
        return [path("<int:layout_id>/route/", self.admin_site.admin_view(self.route_view), name="picking_app_layout_route"),
                *super().get_urls()]

    @admin.display(description="Route")
    def route_link(self, obj):
        if not obj.pk:
            return "-"
        return format_html('<a href="{}">Draw a route…</a>', reverse("admin:picking_app_layout_route", args=[obj.pk]))

    def route_view(self, request, layout_id: int):
        layout = get_object_or_404(Layout.objects.select_related("location"), pk=layout_id)
        if not self.has_view_permission(request, layout):
            raise PermissionDenied
        policy = request.GET.get("policy", "optimal")
        policy = policy if policy in SOLVERS else "optimal"
        picks_text = request.GET.get("picks", "").strip()
        try:
            n = max(1, min(200, int(request.GET.get("n", 15))))
            seed = int(request.GET.get("seed", 1))
        except ValueError:
            n, seed = 15, 1
        context = {**self.admin_site.each_context(request), "layout": layout, "policies": SOLVERS, "policy": policy,
                   "picks_text": picks_text, "n": n, "seed": seed, "title": f"Route on {layout}"}
        try:
            grid = selectors.grid_for(layout)
        except ValueError as exc:
            context["error"] = f"The layout is inconsistent: {exc}"
            return render(request, "admin/picking_app/route.html", context)
        all_bins = [(selectors.slot_of(b), b.side, b.sku_id is not None) for b in layout.bins.all()]
        if picks_text:
            bins, errors = selectors.resolve_picks(layout, [p.strip() for p in picks_text.split(",") if p.strip()])
            if errors:
                context["error"] = "; ".join(errors.values())
        else:
            bins = selectors.random_bins(layout, n, seed)
        walk, slots = [], []
        if bins and "error" not in context:
            try:
                plan = selectors.plan_route(layout, bins, policy)
            except ValueError as exc:  # Unreachable, or a bin outside the layout
                context["error"] = str(exc)
            else:
                metric = Metric(grid)
                slots = [selectors.slot_of(bins[i]) for i in plan.route.order]
                stops = [Point.depot(), *(Point.of(s) for s in slots), Point.depot()]
                if plan.route.waypoints:  # a policy: draw the walk it prescribes, not a shortcut
                    stops = list(plan.route.waypoints)
                for p, q in zip(stops, stops[1:], strict=False):
                    walk.extend(metric.path(p, q)[0 if not walk else 1:])
                context.update(route=plan.route, sequence=[bins[i] for i in plan.route.order],
                               baselines=[(k, x) for k, x in sorted(plan.baselines.items()) if x is not None])
        context["svg"] = svg.render(grid, bins=all_bins, picks=slots, route=walk, title=str(layout))
        return render(request, "admin/picking_app/route.html", context)


@admin.register(Bin)
class BinAdmin(admin.ModelAdmin):
    list_display = ["code", "layout", "aisle", "block", "cell", "side", "sku"]
    list_filter = ["layout", "side"]
    search_fields = ["code", "sku__code"]
    autocomplete_fields = ["sku"]
    list_select_related = ["layout__location", "sku"]


class PickListLineInline(admin.TabularInline):
    model = PickListLine
    extra = 0
    can_delete = False
    fields = ["sequence", "bin", "sku", "quantity", "reservation_line"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(PickList)
class PickListAdmin(admin.ModelAdmin):
    list_display = ["id", "layout", "status", "batching", "policy", "units", "capacity", "route_length", "exact", "created_at"]
    list_filter = ["status", "batching", "policy"]
    readonly_fields = ["layout", "batching", "policy", "capacity", "units", "route_length", "exact", "created_at"]
    inlines = [PickListLineInline]
