// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

/// @title Valuation
/// @notice Token amounts valued at a batch's committed prices, for netting liabilities in escape mode.
/// @dev A price is micro-USDC per whole token (10^decimals base units). A value is micro-USDC scaled by 1e18:
///          value(x) = x * price * 1e18 / 10^decimals
///      rounded down for what an account is owed (claims) and up for what it owes (liabilities and the pool), so
///      rounding never pays an account more than its exact share. `fits` tells whether value(x) fits in uint256;
///      the ClearingHouse refuses a batch whose claims totals do not, so no escape computation can overflow.
library Valuation {
    /// @notice Value scale: values are micro-USDC * 1e18.
    uint256 internal constant SCALE = 1e18;
    /// @notice Largest accepted price (micro-USDC per whole unit): keeps price * SCALE far inside uint256.
    uint256 internal constant MAX_PRICE = 1e36;

    /// @notice value(x) rounded as asked.
    function value(uint256 x, uint256 price, uint8 decimals, Math.Rounding rounding)
        internal
        pure
        returns (uint256)
    {
        return Math.mulDiv(x, price * SCALE, 10 ** decimals, rounding);
    }

    /// @notice Whether value(x) (rounded up) fits in uint256.
    function fits(uint256 x, uint256 price, uint8 decimals) internal pure returns (bool) {
        uint256 p = price * SCALE;
        uint256 unit = 10 ** decimals;
        if (unit >= p) return true; // value(x) <= x
        // value(x) <= max  <=>  x <= floor(max * unit / p)  (ceil rounding adds < 1, hence strict on the bound)
        return x < Math.mulDiv(type(uint256).max, unit, p);
    }
}
