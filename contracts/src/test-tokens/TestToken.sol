// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title TestToken
/// @notice Freely mintable ERC-20 with configurable decimals, for LOCAL CHAINS ONLY: the constructor
///         refuses any chain id other than anvil's/hardhat's (31337) and 1337.
contract TestToken is ERC20 {
    uint8 private immutable _decimals;

    /// @notice Deployment attempted on a non-local chain.
    error LocalChainOnly(uint256 chainId);

    /// @param name_ token name
    /// @param symbol_ token symbol
    /// @param decimals_ decimals (6 for the stablecoin)
    constructor(string memory name_, string memory symbol_, uint8 decimals_) ERC20(name_, symbol_) {
        if (block.chainid != 31_337 && block.chainid != 1337) revert LocalChainOnly(block.chainid);
        _decimals = decimals_;
    }

    /// @notice Mint `amount` to `to` (anyone: local faucet).
    /// @param to recipient
    /// @param amount amount in token units
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @notice Token decimals.
    /// @return the decimals
    function decimals() public view override returns (uint8) {
        return _decimals;
    }
}
