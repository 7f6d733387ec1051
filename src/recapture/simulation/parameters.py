"""Every behavioural rate of the simulated store, each with where its value comes from.

Sources are named in the comment beside each value:
- "trackbee": /work/shared/background/trackbee-server-side-klaviyo.txt
- "upstack guide": /work/shared/background/upstack-klaviyo-abandonment-guide.txt
- "upstack destination": /work/shared/background/upstack-klaviyo-destination.txt
- "playbook": /work/shared/background/cart-abandonment-flow-playbook.txt
- "README": the "Facts worth knowing" of /work/shared/README.md
- public studies, named where used: StatCounter's browser and OS shares (United States, 2024), WebKit's
  Intelligent Tracking Prevention posts (2.1 and 2.2, 2019), Littledata's Shopify conversion benchmarks.
- "assumption": no source gives the figure; the value is our stated guess, to be replaced by store data.

docs/accuracy.md lists every parameter with its source, and what the funnel rates add up to.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Parameters:
    # -- devices and browsers ------------------------------------------------------------------------------------
    # trackbee: "60-70% of traffic originates from mobile" (the shopper's main device is a phone).
    mobile_share: float = 0.65
    # StatCounter (US mobile operating systems, 2024): iOS holds a little over half of US phones.
    ios_share_of_mobile: float = 0.55
    # StatCounter (US desktop browsers, 2024): Safari about 15-20% of desktop; with iOS this gives the Safari share
    # (see `safari_share`).
    safari_share_of_desktop: float = 0.15
    # StatCounter (US desktop browsers, 2024): Firefox about 6-7%; the rest of desktop is Chrome or Chromium (Edge).
    firefox_share_of_desktop: float = 0.07
    # upstack guide: "ad blockers, which roughly 30% of desktop users run" block Klaviyo's script.
    desktop_ad_blocker_share: float = 0.30
    # assumption: content blockers on phones (Safari content blockers, Brave) are rarer than on desktop.
    mobile_blocker_share: float = 0.05
    # assumption: share of phone visits arriving from an Instagram/Facebook ad that opens the app's in-app browser
    # with isolated storage (trackbee: mobile traffic comes "often through social media ads that open in-app
    # browsers"; upstack guide describes the isolated cookie storage; neither gives a rate).
    in_app_browser_share: float = 0.30
    # assumption: Instagram's share of those in-app visits (the rest is Facebook).
    instagram_share_of_in_app: float = 0.60
    # assumption: share of desktop visits that come from a social ad (fbclid), in the normal browser.
    desktop_social_share: float = 0.15
    # assumption: shoppers who use a second device (phone and computer) during the window (trackbee and upstack
    # guide describe the cross-device journey as common without a figure).
    cross_device_share: float = 0.30
    # assumption: share of a cross-device shopper's visits made on the second device.
    second_device_visit_share: float = 0.40

    # -- households and networks --------------------------------------------------------------------------------
    # assumption: shoppers who live with another shopper of the same store (one household, one home /24).
    household_pair_share: float = 0.10
    # assumption: of those pairs, the share that use one family tablet (one browser, one clientId, two people).
    shared_tablet_share: float = 0.50
    # assumption: share of a tablet-sharing shopper's visits made on the family tablet.
    shared_tablet_visit_share: float = 0.35
    # assumption: shoppers who sometimes shop from an office network (one public IP for the whole office).
    office_worker_share: float = 0.35
    # assumption: share of an office worker's computer visits made from the office (weekdays, 9:00-18:00).
    office_visit_share: float = 0.50
    # assumption: shoppers per office network; README: PostHog drops IP-days with more than 25 devices as shared.
    shoppers_per_office: int = 20
    # assumption: share of phone visits over the carrier's network (the rest on home Wi-Fi).
    cellular_share: float = 0.55
    # assumption: shoppers behind one carrier-grade NAT address (README: carrier NAT puts many devices on one IP).
    shoppers_per_carrier_ip: int = 40

    # -- visits -------------------------------------------------------------------------------------------------
    # assumption: probability that a shopper comes back after each visit (so 1 / (1 - r) visits on average).
    repeat_visit_rate: float = 0.50
    # assumption: upper bound of visits per shopper in the window.
    max_visits_per_shopper: int = 8
    # assumption: mean time between two visits of one shopper.
    mean_days_between_visits: float = 1.5

    # -- Klaviyo ------------------------------------------------------------------------------------------------
    # assumption: share of shoppers Klaviyo already knows before the window (upstack destination: "Klaviyo already
    # knows many of your customers"; no figure given).
    known_to_klaviyo_share: float = 0.40
    # assumption: share of known shoppers whose main browser still holds Klaviyo's identified cookie (not cleared),
    # before the lifetime caps below are applied.
    prior_cookie_kept_share: float = 0.70
    # assumption: known shoppers were last identified in their browser uniformly over this many days before.
    prior_identification_days: float = 60.0
    # assumption: share of a known shopper's visits that start from a Klaviyo email click (`?_kx=...`).
    email_click_share: float = 0.25
    # README: Klaviyo's `__kla_id` cookie lasts 2 years once identified.
    klaviyo_cookie_days: float = 730.0
    # README and upstack guide: Safari caps cookies set by scripts at 7 days (WebKit's ITP 2.1, 2019).
    safari_cookie_cap_days: float = 7.0
    # README: 24 hours when the visit came from a (decorated) link (WebKit's ITP 2.2, 2019).
    safari_link_cookie_cap_hours: float = 24.0

    # -- funnel (per visit) -------------------------------------------------------------------------------------
    # assumption: visits that open a collection page before the products.
    collection_view_rate: float = 0.35
    # assumption: visits that view at least one product (the rest bounce from the landing page).
    product_view_rate: float = 0.75
    # assumption: further product pages after the first are exponential with this rate (mean 1 / 0.6, about
    # 1.7), at most `max_extra_product_views`.
    extra_product_view_rate: float = 0.6
    max_extra_product_views: int = 5
    # assumption: visits that view a product and add it to the cart (0.75 * 0.14 = 10.5% of visits; typical
    # Shopify add-to-cart rates are 5-15%).
    add_to_cart_rate: float = 0.14
    # assumption: items added two at a time (the rest one at a time).
    double_quantity_share: float = 0.20
    # assumption: carts whose cart page is opened before checkout (`cart_viewed` carries the cart token).
    cart_view_rate: float = 0.70
    # assumption: carts that reach checkout.
    checkout_rate: float = 0.55
    # assumption: checkouts where the email is typed (checkout_contact_info_submitted).
    contact_info_rate: float = 0.80
    # assumption: each later checkout step (address, shipping, payment) reported by the pixel.
    checkout_step_rate: float = 0.90
    # Chosen so that purchases / add-to-carts = 0.55 * 0.80 * 0.68 = 0.30: playbook cites Baymard (2024),
    # "roughly 70% of online shopping carts are abandoned".
    purchase_rate: float = 0.68
    # assumption: abandoned checkouts (email known) whose Shopify recovery link is opened in a later visit, on any
    # of the shopper's devices (it carries the cart token: a deterministic cross-device link).
    recovery_link_share: float = 0.15

    # -- accounts and contact data ------------------------------------------------------------------------------
    # assumption: shoppers with a Shopify customer account.
    customer_account_share: float = 0.25
    # assumption: an account holder's visits made logged in (the pixel's init.data.customer is filled).
    logged_in_visit_share: float = 0.50
    # assumption: shoppers who also give a phone number at checkout.
    phone_share: float = 0.30
    # assumption: browsers whose envelopes say `marketingAllowed: true`. Shopify's Customer Privacy API reports
    # marketing as allowed where the visitor's region needs no consent (most of a US store's visitors) and as
    # refused where a banner asks and the visitor did not opt in; the tenth refused stands for those. Not used for
    # identity; it decides `no_consent` (docs/abandonment.md). A store with an opt-in banner for everyone sees far
    # fewer consents: set it from the store's own data.
    marketing_consent_share: float = 0.90

    @property
    def safari_share(self) -> float:
        """Safari (iOS and macOS) among main devices: the browsers where Klaviyo's cookie is capped."""
        return self.mobile_share * self.ios_share_of_mobile + (1 - self.mobile_share) * self.safari_share_of_desktop

    @property
    def cart_abandonment(self) -> float:
        """Share of add-to-carts that end without a purchase (playbook: ~70%)."""
        return 1 - self.checkout_rate * self.contact_info_rate * self.purchase_rate

    @property
    def checkout_abandonment(self) -> float:
        """Share of started checkouts that end without a purchase in the visit."""
        return 1 - self.contact_info_rate * self.purchase_rate

    @property
    def purchase_per_visit(self) -> float:
        """A visit's conversion rate, before recovery-link purchases (Littledata: about 1.4% on an average Shopify
        store, above 3% for the best fifth: the simulated store converts well, so it abandons less than most)."""
        return self.product_view_rate * self.add_to_cart_rate * (1 - self.cart_abandonment)


DEFAULT_PARAMETERS = Parameters()
