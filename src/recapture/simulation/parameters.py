"""Every behavioural rate of the simulated store, each with where its value comes from.

Sources are named in the comment beside each value:
- "trackbee": /work/shared/background/trackbee-server-side-klaviyo.txt
- "upstack guide": /work/shared/background/upstack-klaviyo-abandonment-guide.txt
- "upstack destination": /work/shared/background/upstack-klaviyo-destination.txt
- "playbook": /work/shared/background/cart-abandonment-flow-playbook.txt
- "README": the "Facts worth knowing" of /work/shared/README.md
- "assumption": no source gives the figure; the value is our stated guess, to be replaced by store data.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Parameters:
    # -- devices and browsers ------------------------------------------------------------------------------------
    # trackbee: "60-70% of traffic originates from mobile" (the shopper's main device is a phone).
    mobile_share: float = 0.65
    # assumption: iPhones are a little over half of US Shopify mobile traffic (iOS-heavy audience).
    ios_share_of_mobile: float = 0.55
    # assumption: macOS Safari among desktop shoppers; with iOS this gives the Safari share (see `safari_share`).
    safari_share_of_desktop: float = 0.15
    # assumption: Firefox among desktop shoppers; the rest of desktop is Chrome (Windows or macOS).
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
    # README and upstack guide: Safari caps cookies set by scripts at 7 days.
    safari_cookie_cap_days: float = 7.0
    # README: 24 hours when the visit came from a (decorated) link.
    safari_link_cookie_cap_hours: float = 24.0

    # -- funnel (per visit) -------------------------------------------------------------------------------------
    # assumption: visits that view at least one product (the rest bounce from the landing page).
    product_view_rate: float = 0.75
    # assumption: visits that add to cart (typical Shopify add-to-cart rates are 5-15%).
    add_to_cart_rate: float = 0.14
    # assumption: carts whose cart page is opened before checkout (`cart_viewed` carries the cart token).
    cart_view_rate: float = 0.70
    # assumption: carts that reach checkout.
    checkout_rate: float = 0.55
    # assumption: checkouts where the email is typed (checkout_contact_info_submitted).
    contact_info_rate: float = 0.80
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
    # assumption: shoppers who allow marketing in the consent banner (stored, not used for identity).
    marketing_consent_share: float = 0.60

    @property
    def safari_share(self) -> float:
        """Safari (iOS and macOS) among main devices: the browsers where Klaviyo's cookie is capped."""
        return self.mobile_share * self.ios_share_of_mobile + (1 - self.mobile_share) * self.safari_share_of_desktop

    @property
    def cart_abandonment(self) -> float:
        """Share of add-to-carts that end without a purchase (playbook: ~70%)."""
        return 1 - self.checkout_rate * self.contact_info_rate * self.purchase_rate


DEFAULT_PARAMETERS = Parameters()
