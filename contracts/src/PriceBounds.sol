// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Vault} from "./Vault.sol";
import {Valuation} from "./libraries/Valuation.sol";
import {AggregatorV3Interface} from "./oracle/AggregatorV3Interface.sol";

/// @title PriceBounds
/// @notice Bounds the prices a batch commits (audit A-1): the ClearingHouse creates it in its constructor and is its
///         only writer. Governance sets a price feed per listed token through `ClearingHouse.setPriceFeed`.
/// @dev Rules, per asset of every accepted batch (`commit`):
///       - listed token 0, the numeraire (the settlement stablecoin): price == NUMERAIRE_PRICE (10^6 micro-USDC per
///         whole unit), always;
///       - a token with a feed whose latest answer is usable (> 0, updatedAt <= now, now - updatedAt <= maxAgeSeconds,
///         decimals <= 36, worth at most Valuation.MAX_PRICE): |price - F| <= F * maxDeviationPpm / 1e6, with
///         F = answer * 10^6 / 10^decimals micro-USDC per whole unit. Compared exactly, on both sides multiplied by
///         10^decimals (no rounding; the bound is inclusive). F in errors and views is rounded down;
///       - a token with a feed that is not usable (stale, answer <= 0, reverts, returns too little, has no code):
///         price == committedPrice (the last batch's price, unchanged), so a broken feed never stops settlement;
///       - a token without a feed: unchecked (a stolen operator key can still skew it).
///      Then every price becomes the token's `committedPrice`. After a rollback it stays the voided batch's price
///      (which passed these same rules) until the next accepted batch.
///      The feed is read with low-level staticcalls and the answer decoded only from enough return data, so no feed
///      can make `commit` revert except by answering (fresh) a price the batch deviates from.
contract PriceBounds {
    /// @notice A token's price feed and its bounds.
    struct PriceFeed {
        AggregatorV3Interface feed;
        uint32 maxDeviationPpm;
        uint32 maxAgeSeconds;
    }

    /// @notice The price of listed token 0, the numeraire: 1 whole unit = 10^6 micro-USDC.
    uint256 public constant NUMERAIRE_PRICE = 1e6;
    /// @notice Gas a feed call may use (a feed that burns more counts as not usable, never as a revert).
    uint256 public constant FEED_GAS = 200_000;
    /// @notice Largest `maxDeviationPpm` (50%).
    uint32 public constant MAX_DEVIATION_PPM = 500_000;

    /// @notice The ClearingHouse (its creator), the only caller of `setPriceFeed` and `commit`.
    address public immutable clearingHouse;
    /// @notice The Vault (listing order).
    Vault public immutable vault;

    /// @notice Per token: its feed and bounds (feed 0: none).
    mapping(address token => PriceFeed) public priceFeed;
    /// @notice Per token: the price the last accepted batch committed (0 before the token's first batch).
    mapping(address token => uint256) public committedPrice;

    /// @notice Governance set (feed != 0) or removed (feed == 0) `token`'s price feed.
    event PriceFeedSet(address indexed token, address feed, uint32 maxDeviationPpm, uint32 maxAgeSeconds);

    /// @notice Only the ClearingHouse may call this.
    error NotClearingHouse(address caller);
    /// @notice `token` is not listed.
    error TokenNotListed(address token);
    /// @notice The numeraire (listed token 0) must be priced at exactly NUMERAIRE_PRICE.
    error NumerairePriceNotPinned(address token, uint256 price);
    /// @notice `price` is more than maxDeviationPpm away from the feed's usable answer (`feedPrice`: micro-USDC per
    ///         whole unit, rounded down).
    error PriceDeviatesFromFeed(address token, uint256 price, uint256 feedPrice);
    /// @notice The token's feed is not usable (stale, answer <= 0, reverting, unreadable): the batch may only repeat
    ///         the last committed price.
    error PriceFeedUnavailable(address token, uint256 price, uint256 committedPrice);
    /// @notice Feed bounds: 0 < maxDeviationPpm <= MAX_DEVIATION_PPM and maxAgeSeconds > 0; no feed for the numeraire.
    error BadPriceFeed(address token, uint32 maxDeviationPpm, uint32 maxAgeSeconds);

    /// @param vault_ the Vault whose listed tokens the batches price
    constructor(Vault vault_) {
        clearingHouse = msg.sender;
        vault = vault_;
    }

    modifier onlyClearingHouse() {
        if (msg.sender != clearingHouse) revert NotClearingHouse(msg.sender);
        _;
    }

    /// @notice Set or remove (feed 0) `token`'s feed (the ClearingHouse forwards governance's call).
    /// @param token a listed token other than the numeraire
    /// @param feed the feed, or 0 to remove it
    /// @param maxDeviationPpm 0 < it <= MAX_DEVIATION_PPM (stored as 0 when removing)
    /// @param maxAgeSeconds > 0 (stored as 0 when removing)
    function setPriceFeed(address token, address feed, uint32 maxDeviationPpm, uint32 maxAgeSeconds)
        external
        onlyClearingHouse
    {
        address[] memory listed = vault.listedTokens();
        uint256 i;
        while (i < listed.length && listed[i] != token) ++i;
        if (i == listed.length) revert TokenNotListed(token);
        if (feed == address(0)) {
            (maxDeviationPpm, maxAgeSeconds) = (0, 0);
        } else if (
            i == 0 || maxDeviationPpm == 0 || maxDeviationPpm > MAX_DEVIATION_PPM || maxAgeSeconds == 0
        ) {
            revert BadPriceFeed(token, maxDeviationPpm, maxAgeSeconds);
        }
        priceFeed[token] = PriceFeed(AggregatorV3Interface(feed), maxDeviationPpm, maxAgeSeconds);
        emit PriceFeedSet(token, feed, maxDeviationPpm, maxAgeSeconds);
    }

    /// @notice Check a batch's prices against the rules above and record them (the ClearingHouse, in `submitBatch`).
    /// @param tokens the listed tokens, in listing order
    /// @param prices the batch's price of each (already in (0, Valuation.MAX_PRICE])
    function commit(address[] calldata tokens, uint256[] calldata prices) external onlyClearingHouse {
        for (uint256 i; i < tokens.length; ++i) {
            address t = tokens[i];
            uint256 p = prices[i];
            if (i == 0) {
                if (p != NUMERAIRE_PRICE) revert NumerairePriceNotPinned(t, p);
            } else {
                PriceFeed memory f = priceFeed[t];
                if (address(f.feed) != address(0)) {
                    (uint256 answer, uint256 unit) = _read(f);
                    if (answer == 0) {
                        uint256 last = committedPrice[t];
                        if (p != last) revert PriceFeedUnavailable(t, p, last);
                    } else {
                        // answer <= 1e30 * unit <= 1e66, p <= 1e36, unit <= 1e36: no product overflows
                        uint256 x = p * unit;
                        uint256 y = answer * 1e6;
                        if ((x > y ? x - y : y - x) > answer * f.maxDeviationPpm) {
                            revert PriceDeviatesFromFeed(t, p, y / unit);
                        }
                    }
                }
            }
            committedPrice[t] = p;
        }
    }

    /// @notice `token`'s feed price now, in micro-USDC per whole unit rounded down (0: no feed, or not usable).
    /// @param token a token
    /// @return the feed price
    function feedPrice(address token) external view returns (uint256) {
        PriceFeed memory f = priceFeed[token];
        if (address(f.feed) == address(0)) return 0;
        (uint256 answer, uint256 unit) = _read(f);
        return answer == 0 ? 0 : answer * 1e6 / unit;
    }

    /// The feed's answer and 10^decimals if usable, else (0, 0).
    function _read(PriceFeed memory f) private view returns (uint256, uint256) {
        (bool ok, bytes memory r) = address(f.feed).staticcall{gas: FEED_GAS}(
            abi.encodeCall(AggregatorV3Interface.latestRoundData, ())
        );
        if (!ok || r.length < 160) return (0, 0);
        (, int256 answer,, uint256 updatedAt,) = abi.decode(r, (uint256, int256, uint256, uint256, uint256));
        if (answer <= 0 || updatedAt > block.timestamp || block.timestamp - updatedAt > f.maxAgeSeconds) {
            return (0, 0);
        }
        (ok, r) =
            address(f.feed).staticcall{gas: FEED_GAS}(abi.encodeCall(AggregatorV3Interface.decimals, ()));
        if (!ok || r.length < 32) return (0, 0);
        uint256 d = abi.decode(r, (uint256));
        // worth at most MAX_PRICE: answer * 1e6 / 10^d <= 1e36  <=>  answer <= 1e30 * 10^d
        if (d > 36 || uint256(answer) > Valuation.MAX_PRICE / 1e6 * 10 ** d) return (0, 0);
        return (uint256(answer), 10 ** d);
    }
}
